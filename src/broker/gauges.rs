//! Gauges: the per-tenant backlog, in-flight and retained bytes, the store's
//! size and the tenants by status, refreshed on a timer.

use super::Broker;

impl Broker {
    /// Sets the per-tenant gauges (backlog, in-flight, retained bytes), the
    /// store size and the tenant counts by status.
    pub async fn refresh_gauges(&self) {
        use crate::observability::name;
        use std::collections::HashMap;
        let now = self.clock.now_ms();
        let mut per_tenant: HashMap<String, (u64, u64, u64)> = HashMap::new();
        for tenant in self.tenancy.list_tenants() {
            per_tenant
                .entry(self.metrics.tenant_label(&tenant.id))
                .or_default();
        }
        for topic in self.all_topics() {
            let label = self.metrics.tenant_label(&topic.tenant);
            let first = topic.first_offset();
            let end = topic.visible_end();
            let mut backlog = 0;
            let mut in_flight = 0;
            for sub in topic.subscription_list() {
                let state = sub.state.lock().await;
                backlog += end.saturating_sub(state.next_offset.max(first)) + state.due_now(now);
                in_flight += state.in_flight(now);
            }
            let entry = per_tenant.entry(label).or_default();
            entry.0 += backlog;
            entry.1 += in_flight;
            entry.2 += topic.stored_bytes();
        }
        for (tenant, (backlog, in_flight, retained)) in per_tenant {
            let labels = [("tenant", tenant)];
            self.metrics.gauge(name::BACKLOG, &labels, backlog as f64);
            self.metrics
                .gauge(name::IN_FLIGHT, &labels, in_flight as f64);
            self.metrics
                .gauge(name::RETAINED_BYTES, &labels, retained as f64);
        }
        if let Ok(size) = self.store.size_on_disk() {
            self.metrics.gauge(name::STORAGE_BYTES, &[], size as f64);
        }
        let mut by_status: HashMap<&'static str, u64> =
            [("active", 0), ("suspended", 0), ("terminated", 0)]
                .into_iter()
                .collect();
        let mut in_arrears = 0u64;
        for tenant in self.tenancy.list_tenants() {
            if tenant.status == crate::tenancy::TenantStatus::Suspended
                && tenant.status_reason == crate::tenancy::SuspendReason::Arrears.name()
            {
                in_arrears += 1;
            }
            let status = match tenant.status {
                crate::tenancy::TenantStatus::Active => "active",
                crate::tenancy::TenantStatus::Suspended => "suspended",
                crate::tenancy::TenantStatus::Terminated => "terminated",
            };
            *by_status.entry(status).or_default() += 1;
        }
        for (status, count) in by_status {
            self.metrics.gauge(
                name::TENANTS,
                &[("status", status.to_string())],
                count as f64,
            );
        }
        self.metrics
            .gauge(name::TENANTS_IN_ARREARS, &[], in_arrears as f64);
        self.metrics.gauge(
            name::MAINTENANCE,
            &[],
            if self.tenancy.maintenance().is_some() {
                1.0
            } else {
                0.0
            },
        );
    }
}
