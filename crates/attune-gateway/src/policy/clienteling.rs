//! Store devices see only the customer in front of them. A principal that
//! holds a method only through `store.clienteling` (a staff device at the till,
//! without any other scope the method accepts) reaches customers through one
//! view: the STORE page of its own store, for the customer identified there by
//! the loyalty card or app code they showed (resolved by profile's identities,
//! and recorded in the data-access log as the store's view). It may not name a
//! customer by id, ask for another page, or speak for another store: a device
//! that could would read any customer whose id it learnt. A device whose token
//! grants more scopes (or `admin`) is held to those scopes only.

use attune_proto::gateway::v1 as pb;
use prost::Message as _;
use tonic::Status;

use super::descriptors::CompiledRule;
use super::first_message::FirstMessage;
use super::principal::Principal;
use super::table::scope::STORE_CLIENTELING;

/// The one method a store device reaches customers through.
const STORE_PAGE: &str = "/attune.gateway.v1.GatewayService/GetPageExperience";

/// Whether `principal` may call `rule`'s method only as a store device: it
/// holds `store.clienteling` and none of the method's other scopes.
pub(crate) fn only_as_store_device(principal: &Principal, rule: &CompiledRule) -> bool {
    let scopes = rule.access.scopes();
    if matches!(
        principal,
        Principal::Development | Principal::Customer { .. }
    ) || !scopes.contains(&STORE_CLIENTELING)
    {
        return false;
    }
    let others: Vec<&str> = scopes
        .iter()
        .copied()
        .filter(|scope| *scope != STORE_CLIENTELING)
        .collect();
    !principal.holds_any(&others)
}

fn refused(why: &str) -> Status {
    Status::permission_denied(format!(
        "a store device sees only the customer at its till: {why}"
    ))
}

/// Checks that a store device's call to `path` is the STORE page of its own
/// store for a customer identified by card or app code.
pub(crate) fn check(
    principal: &Principal,
    path: &str,
    message: &FirstMessage,
) -> Result<(), Status> {
    if path != STORE_PAGE {
        return Err(refused(
            "ask GatewayService/GetPageExperience for the STORE page",
        ));
    }
    let FirstMessage::Plain(bytes) = message else {
        return Err(refused("send the request uncompressed"));
    };
    // The gateway's own request: decoding it is how its own service reads it.
    let request = pb::GetPageExperienceRequest::decode(bytes.as_ref())
        .map_err(|_| refused("the request could not be read"))?;
    if request.page_type != pb::PageType::Store as i32 {
        return Err(refused("ask for the STORE page (PAGE_TYPE_STORE)"));
    }
    if !request.customer_id.is_empty() {
        return Err(refused(
            "identify the customer by the loyalty card or app code they showed, not by customer_id",
        ));
    }
    let Some(store) = &request.store else {
        return Err(refused("name the store and how the customer identified"));
    };
    if store.identification.is_none() {
        return Err(refused(
            "name the loyalty card or app code the customer showed",
        ));
    }
    if let Principal::Staff { store_id, .. } = principal
        && store.store_id != *store_id
    {
        return Err(refused("store.store_id must be the device's own store"));
    }
    Ok(())
}
