//! The gateway's own API (`attune.gateway.v1.GatewayService`): a typed client,
//! a valid page request to spoil, and a gateway in front of backends that
//! misbehave (one stopped, one slow) to see how a page degrades.

use std::net::SocketAddr;
use std::time::Duration;

use attune::Role;
use attune_kit::clock::Clock;
use attune_proto::common::v1 as common_pb;
use attune_proto::gateway::v1 as pb;
use attune_proto::gateway::v1::gateway_service_client::GatewayServiceClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::Channel;

use crate::TestApp;
use crate::profile_events::eur;

impl TestApp {
    /// A client of the gateway's own API on the shared connection.
    pub fn gateway(&self) -> GatewayServiceClient<Channel> {
        GatewayServiceClient::new(self.channel.clone())
    }

    /// Asks for a page, which must be answered.
    pub async fn page(
        &self,
        request: pb::GetPageExperienceRequest,
    ) -> pb::GetPageExperienceResponse {
        self.gateway()
            .get_page_experience(request)
            .await
            .expect("the page is composed")
            .into_inner()
    }

    /// How many page reads (GetPageExperience) `customer`'s data-access log
    /// holds, among its newest 100 entries.
    pub async fn page_reads(&self, customer: &str) -> usize {
        self.data_access()
            .list_data_access(pb::ListDataAccessRequest {
                customer_id: customer.into(),
                page_size: 100,
                page_token: String::new(),
            })
            .await
            .expect("the data-access log is listed")
            .into_inner()
            .accesses
            .iter()
            .filter(|access| access.rpc == "attune.gateway.v1.GatewayService/GetPageExperience")
            .count()
    }

    /// A gateway alone (`attune serve --service gateway`) in front of this
    /// server's port for every service, except the services named in
    /// `elsewhere`, reached at the address given. Waits only until the gateway
    /// itself serves: a backend it cannot reach stays NOT_SERVING.
    pub async fn gateway_in_front(&self, elsewhere: &[(&str, String)]) -> TestApp {
        let mut config = self.config.clone();
        for service in attune::SERVICES {
            config
                .gateway
                .backends
                .insert(service.name().into(), format!("http://{}", self.address));
        }
        for (service, address) in elsewhere {
            config
                .gateway
                .backends
                .insert((*service).into(), address.clone());
        }
        let gateway = TestApp::launch(config, Role::Gateway, Clock::system()).await;
        gateway.wait_until_serving("").await;
        gateway
    }
}

/// An address where nothing listens: a stopped backend.
pub async fn stopped_backend() -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("an ephemeral loopback port is free");
    let address = listener
        .local_addr()
        .expect("a bound listener has an address");
    drop(listener);
    format!("http://{address}")
}

/// A slow backend: a TCP proxy to `upstream` that holds every chunk of the
/// backend's answers but the first (its HTTP/2 settings) for `delay` before
/// passing it on. Runs until the test ends.
pub async fn slow_backend(upstream: SocketAddr, delay: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("an ephemeral loopback port is free");
    let address = listener
        .local_addr()
        .expect("a bound listener has an address");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(relay(client, upstream, delay));
        }
    });
    format!("http://{address}")
}

async fn relay(client: TcpStream, upstream: SocketAddr, delay: Duration) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let requests = async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
    };
    let answers = async move {
        let mut buffer = vec![0u8; 16 * 1024];
        let mut handshake = true;
        loop {
            let read = match server_read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => read,
            };
            // The server's HTTP/2 settings pass at once, so the connection
            // stands: the backend is slow, not unreachable.
            if !handshake {
                tokio::time::sleep(delay).await;
            }
            handshake = false;
            if client_write.write_all(&buffer[..read]).await.is_err() {
                return;
            }
        }
    };
    tokio::join!(requests, answers);
}

/// A cart page for `customer`: one list, a cart of one item worth 30 euros
/// delivered to a position in Berlin, every part asked for, each within 2 s
/// (a loaded test machine must not turn a part late).
pub fn cart_page(customer: &str) -> pb::GetPageExperienceRequest {
    pb::GetPageExperienceRequest {
        customer_id: customer.into(),
        page_type: pb::PageType::Cart.into(),
        placements: vec![pb::PlacementRequest {
            slot_id: "below-cart".into(),
            placement: pb::SlotPlacement::Cart.into(),
            max_items: 5,
            filter: Some(pb::SlotFilter {
                in_stock_only: true,
                exclude_in_cart: true,
                ..Default::default()
            }),
        }],
        context: Some(pb::PageContext {
            channel: common_pb::Channel::Web.into(),
            current_item_ids: Vec::new(),
            category_id: String::new(),
            search_query: String::new(),
            cart_lines: vec![pb::CartLine {
                item_id: "sku-1".into(),
                quantity: 1,
                unit_weight_grams: 500,
            }],
            cart_total: Some(eur(3000)),
            location: Some(pb::DeliveryLocation {
                value: Some(pb::delivery_location::Value::Position(pb::GeoPosition {
                    point: Some(crate::delivery::geo(52.52, 13.405)),
                    country_code: "DE".into(),
                })),
            }),
            accepted_payment_methods: Vec::new(),
            language_code: "en".into(),
        }),
        parts: vec![
            pb::PagePart::Profile.into(),
            pb::PagePart::Recommendations.into(),
            pb::PagePart::Loyalty.into(),
            pb::PagePart::Delivery.into(),
        ],
        part_budget: Some(prost_types::Duration {
            seconds: 2,
            nanos: 0,
        }),
        store: None,
    }
}

/// The STORE page at the till of `store_id` for the customer showing `card`.
pub fn store_page(store_id: &str, card: &str) -> pb::GetPageExperienceRequest {
    pb::GetPageExperienceRequest {
        customer_id: String::new(),
        page_type: pb::PageType::Store.into(),
        placements: Vec::new(),
        context: Some(pb::PageContext {
            channel: common_pb::Channel::Store.into(),
            ..Default::default()
        }),
        parts: Vec::new(),
        part_budget: Some(prost_types::Duration {
            seconds: 2,
            nanos: 0,
        }),
        store: Some(pb::StoreVisit {
            store_id: store_id.into(),
            identification: Some(pb::store_visit::Identification::LoyaltyCardNumber(
                card.into(),
            )),
        }),
    }
}

/// A part's state and reason, for assertions.
pub fn state(status: Option<&pb::PartStatus>) -> (pb::PartState, pb::PartReason) {
    let status = status.expect("every part carries a status");
    (
        pb::PartState::try_from(status.state).expect("a known state"),
        pb::PartReason::try_from(status.reason).expect("a known reason"),
    )
}
