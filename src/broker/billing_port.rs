//! The broker as billing's [`BrokerPort`]: the two broker actions billing
//! needs (metering storage up to now, erasing a tenant's topics).

use super::Broker;
use crate::billing::{BrokerPort, PortFuture};

impl BrokerPort for Broker {
    fn meter_storage_now(&self) -> PortFuture<'_> {
        Box::pin(self.sample_storage(true))
    }

    fn meter_tenant_storage_now<'a>(&'a self, tenant: &'a str) -> PortFuture<'a> {
        Box::pin(self.sample_tenant_storage(tenant))
    }

    fn fold_device_usage<'a>(&'a self, tenant: &'a str) -> PortFuture<'a> {
        Box::pin(Broker::fold_device_usage(self, tenant))
    }

    fn erase_tenant_data<'a>(&'a self, tenant: &'a str) -> PortFuture<'a> {
        Box::pin(Broker::erase_tenant_data(self, tenant))
    }
}
