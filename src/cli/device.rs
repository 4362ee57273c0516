//! `tallyq device`: bind, unbind and list device ids.

use anyhow::Result;
use clap::Subcommand;

use tallyq::client::Client;
use tallyq::proto::v1 as pb;

/// Device binding commands (operator).
#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Bind a device id to a tenant; only that tenant may then produce with it.
    Bind {
        /// Device id (e.g. an IMEI).
        device_id: String,
        /// Tenant id.
        tenant: String,
        /// Move it from the tenant that holds it now.
        #[arg(long)]
        rebind: bool,
    },
    /// Remove a binding.
    Unbind {
        /// Device id.
        device_id: String,
    },
    /// List bindings (of one tenant, or all).
    List {
        /// Tenant id.
        tenant: Option<String>,
    },
}

/// Runs a `tallyq device` command and prints the bindings it returns.
pub(super) async fn device(client: &Client, cmd: &DeviceCommand) -> Result<()> {
    let print = |d: &pb::DeviceBinding| {
        println!(
            "{}\ttenant={}\tbound_ms={}",
            d.device_id, d.tenant, d.bound_time_unix_ms
        )
    };
    match cmd {
        DeviceCommand::Bind {
            device_id,
            tenant,
            rebind,
        } => {
            let d = call!(
                client,
                operator,
                bind_device,
                pb::BindDeviceRequest {
                    device_id: device_id.clone(),
                    tenant: tenant.clone(),
                    rebind: *rebind,
                }
            );
            print(&d);
        }
        DeviceCommand::Unbind { device_id } => {
            call!(
                client,
                operator,
                unbind_device,
                pb::UnbindDeviceRequest {
                    device_id: device_id.clone(),
                }
            );
            println!("unbound {device_id}");
        }
        DeviceCommand::List { tenant } => {
            let list = call!(
                client,
                operator,
                list_devices,
                pb::ListDevicesRequest {
                    tenant: tenant.clone().unwrap_or_default(),
                }
            );
            for d in &list.devices {
                print(d);
            }
        }
    }
    Ok(())
}
