//! A customer's address book, sealed under the customer's data key: a row holds
//! the address id, the customer id, the default flag, the creation time and the
//! ciphertext of everything else (recipient, lines, postal code, phone,
//! instructions, position), bound to its address id.

use attune_kit::ApiError;
use attune_kit::db::micros::{from_micros, to_micros};
use attune_kit::error::{Violations, checked};
use attune_kit::types::time;
use attune_proto::delivery::v1 as pb;
use chrono::{DateTime, Utc};
use prost::Message;
use sea_orm::sea_query::{Expr, ExprTrait, Order, Query};
use sea_orm::{ConnectionTrait, DbErr, FromQueryResult};
use serde::Serialize;

use crate::app::Delivery;
use crate::crypto::DataKey;
use crate::geo::Point;
use crate::store::{self, Write};
use crate::validate;

/// Most addresses one customer keeps.
pub const MAX_ADDRESSES: usize = 20;

/// The associated data binding an address's ciphertext to its row.
fn context(address_id: &str) -> String {
    format!("address:{address_id}")
}

/// Checks an address's content (output-only fields ignored) and returns it as
/// stored: ids and times cleared.
pub fn parse_address(
    v: &mut Violations,
    field: &str,
    raw: Option<pb::Address>,
) -> Option<pb::Address> {
    let Some(address) = raw else {
        v.add(field, "is required");
        return None;
    };
    let pb::Address {
        address_id: _,
        label,
        recipient_name,
        postal_address,
        phone_number,
        delivery_instructions,
        location,
        default_address,
        create_time: _,
    } = address;
    validate::text(v, &format!("{field}.label"), &label, 0, 50);
    validate::text(
        v,
        &format!("{field}.recipient_name"),
        &recipient_name,
        1,
        200,
    );
    match &postal_address {
        None => v.add(format!("{field}.postal_address"), "is required"),
        Some(postal) => {
            let f = format!("{field}.postal_address");
            if postal.address_lines.is_empty() || postal.address_lines.len() > 3 {
                v.add(format!("{f}.address_lines"), "must have 1 to 3 lines");
            }
            for (i, line) in postal.address_lines.iter().enumerate() {
                validate::text(v, &format!("{f}.address_lines[{i}]"), line, 1, 200);
            }
            validate::text(v, &format!("{f}.locality"), &postal.locality, 1, 100);
            validate::postal_code(v, &format!("{f}.postal_code"), &postal.postal_code);
            validate::country(v, &format!("{f}.country_code"), &postal.country_code);
        }
    }
    if !phone_number.is_empty() {
        let digits = phone_number.strip_prefix('+').unwrap_or("");
        if !(8..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            v.add(
                format!("{field}.phone_number"),
                "must be in E.164 form, such as +4915112345678",
            );
        }
    }
    validate::text(
        v,
        &format!("{field}.delivery_instructions"),
        &delivery_instructions,
        0,
        500,
    );
    validate::optional_point(v, &format!("{field}.location"), location.as_ref());
    Some(pb::Address {
        address_id: String::new(),
        label,
        recipient_name,
        postal_address,
        phone_number,
        delivery_instructions,
        location,
        default_address,
        create_time: None,
    })
}

#[derive(FromQueryResult)]
struct KeyRow {
    wrapped_key: Vec<u8>,
}

/// The customer's data key, if they have one.
pub async fn data_key(
    delivery: &Delivery,
    db: &impl ConnectionTrait,
    customer_id: &str,
) -> Result<Option<DataKey>, ApiError> {
    let query = Query::select()
        .column("wrapped_key")
        .from("delivery_data_keys")
        .and_where(Expr::col("customer_id").eq(customer_id))
        .to_owned();
    let Some(row) = store::one::<KeyRow>(db, &query).await? else {
        return Ok(None);
    };
    delivery
        .master_key
        .unwrap_data_key(customer_id, &row.wrapped_key)
        .map(Some)
        .map_err(ApiError::internal)
}

/// The customer's data key, made (and stored wrapped) on first use.
pub async fn data_key_or_new(
    delivery: &Delivery,
    db: &impl ConnectionTrait,
    customer_id: &str,
    now: DateTime<Utc>,
) -> Result<DataKey, ApiError> {
    if let Some(key) = data_key(delivery, db, customer_id).await? {
        return Ok(key);
    }
    let (key, wrapped) = delivery
        .master_key
        .new_data_key(customer_id)
        .map_err(ApiError::internal)?;
    Query::insert()
        .into_table("delivery_data_keys")
        .columns(["customer_id", "wrapped_key", "create_time"])
        .values_panic([customer_id.into(), wrapped.into(), to_micros(now).into()])
        .to_owned()
        .run(db)
        .await?;
    Ok(key)
}

#[derive(FromQueryResult)]
struct AddressRow {
    address_id: String,
    sealed: Vec<u8>,
    is_default: bool,
    create_time: i64,
}

fn unseal(key: &DataKey, row: AddressRow) -> Result<pb::Address, ApiError> {
    let plain = key
        .open(&context(&row.address_id), &row.sealed)
        .map_err(ApiError::internal)?;
    let mut address = pb::Address::decode(plain.as_slice()).map_err(ApiError::internal)?;
    address.address_id = row.address_id;
    address.default_address = row.is_default;
    address.create_time = Some(time::to_proto(
        from_micros(row.create_time).map_err(ApiError::internal)?,
    ));
    Ok(address)
}

/// The customer's addresses, decrypted: the default first, then by creation.
pub async fn list(
    delivery: &Delivery,
    db: &impl ConnectionTrait,
    customer_id: &str,
) -> Result<Vec<pb::Address>, ApiError> {
    let query = Query::select()
        .columns(["address_id", "sealed", "is_default", "create_time"])
        .from("delivery_addresses")
        .and_where(Expr::col("customer_id").eq(customer_id))
        .order_by("is_default", Order::Desc)
        .order_by("create_time", Order::Asc)
        .order_by("address_id", Order::Asc)
        .to_owned();
    let rows = store::all::<AddressRow>(db, &query).await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let Some(key) = data_key(delivery, db, customer_id).await? else {
        return Err(ApiError::internal("addresses without a data key"));
    };
    rows.into_iter().map(|row| unseal(&key, row)).collect()
}

/// One of the customer's addresses; NOT_FOUND when they have no such address.
pub async fn get(
    delivery: &Delivery,
    db: &impl ConnectionTrait,
    customer_id: &str,
    address_id: &str,
) -> Result<pb::Address, ApiError> {
    list(delivery, db, customer_id)
        .await?
        .into_iter()
        .find(|a| a.address_id == address_id)
        .ok_or_else(|| ApiError::NotFound(format!("address {address_id} not found")))
}

#[derive(Serialize)]
struct AddCommand<'a> {
    customer_id: &'a str,
    address: Vec<u8>,
}

/// AddAddress.
pub async fn add(
    delivery: &Delivery,
    request: pb::AddAddressRequest,
) -> Result<pb::Address, ApiError> {
    let pb::AddAddressRequest {
        customer_id,
        address,
        request_id,
    } = request;
    let mut v = Violations::default();
    let customer = validate::customer(&mut v, "customer_id", &customer_id);
    let address = parse_address(&mut v, "address", address);
    let request_id = validate::request_id(&mut v, &request_id);
    v.finish()?;
    let (customer, address, request_id) =
        (checked(customer), checked(address), checked(request_id));
    let command = AddCommand {
        customer_id: customer.as_ref(),
        address: address.encode_to_vec(),
    };
    let now = delivery.clock.now();
    let address_id = delivery
        .idempotent("AddAddress", request_id.as_ref(), &command, async |txn| {
            let existing = list(delivery, txn, customer.as_ref()).await?;
            if existing.len() >= MAX_ADDRESSES {
                return Err(ApiError::FailedPrecondition(format!(
                    "a customer keeps at most {MAX_ADDRESSES} addresses"
                )));
            }
            let key = data_key_or_new(delivery, txn, customer.as_ref(), now).await?;
            let address_id = format!("adr-{}", uuid::Uuid::new_v4().simple());
            let is_default = address.default_address || existing.is_empty();
            let mut stored = address.clone();
            stored.default_address = false;
            let sealed = key
                .seal(&context(&address_id), &stored.encode_to_vec())
                .map_err(ApiError::internal)?;
            if is_default {
                clear_default(txn, customer.as_ref()).await?;
            }
            Query::insert()
                .into_table("delivery_addresses")
                .columns([
                    "address_id",
                    "customer_id",
                    "sealed",
                    "is_default",
                    "create_time",
                ])
                .values_panic([
                    address_id.clone().into(),
                    customer.as_ref().into(),
                    sealed.into(),
                    is_default.into(),
                    to_micros(now).into(),
                ])
                .to_owned()
                .run(txn)
                .await?;
            Ok(address_id)
        })
        .await?
        .into_inner();
    get(delivery, &delivery.db, customer.as_ref(), &address_id).await
}

async fn clear_default(db: &impl ConnectionTrait, customer_id: &str) -> Result<(), DbErr> {
    Query::update()
        .table("delivery_addresses")
        .value("is_default", false)
        .and_where(Expr::col("customer_id").eq(customer_id))
        .to_owned()
        .run(db)
        .await?;
    Ok(())
}

#[derive(Serialize)]
struct DeleteCommand<'a> {
    customer_id: &'a str,
    address_id: &'a str,
}

/// DeleteAddress.
pub async fn delete(
    delivery: &Delivery,
    request: pb::DeleteAddressRequest,
) -> Result<(), ApiError> {
    let pb::DeleteAddressRequest {
        customer_id,
        address_id,
        request_id,
    } = request;
    let mut v = Violations::default();
    let customer = validate::customer(&mut v, "customer_id", &customer_id);
    let address = validate::record_id(&mut v, "address_id", &address_id);
    let request_id = validate::request_id(&mut v, &request_id);
    v.finish()?;
    let (customer, address, request_id) =
        (checked(customer), checked(address), checked(request_id));
    let command = DeleteCommand {
        customer_id: customer.as_ref(),
        address_id: &address,
    };
    delivery
        .idempotent(
            "DeleteAddress",
            request_id.as_ref(),
            &command,
            async |txn| {
                let existing = list(delivery, txn, customer.as_ref()).await?;
                let Some(found) = existing.iter().find(|a| a.address_id == address) else {
                    return Err(ApiError::NotFound(format!("address {address} not found")));
                };
                Query::delete()
                    .from_table("delivery_addresses")
                    .and_where(Expr::col("address_id").eq(address.as_str()))
                    .to_owned()
                    .run(txn)
                    .await?;
                if found.default_address {
                    // The most recently added remaining address takes over.
                    if let Some(next) = existing
                        .iter()
                        .filter(|a| a.address_id != address)
                        .max_by_key(|a| a.create_time.map(|t| (t.seconds, t.nanos)))
                    {
                        Query::update()
                            .table("delivery_addresses")
                            .value("is_default", true)
                            .and_where(Expr::col("address_id").eq(next.address_id.as_str()))
                            .to_owned()
                            .run(txn)
                            .await?;
                    }
                }
                Ok(())
            },
        )
        .await?;
    Ok(())
}

/// ListAddresses.
pub async fn list_api(
    delivery: &Delivery,
    request: pb::ListAddressesRequest,
) -> Result<Vec<pb::Address>, ApiError> {
    let pb::ListAddressesRequest { customer_id } = request;
    let mut v = Violations::default();
    let customer = validate::customer(&mut v, "customer_id", &customer_id);
    v.finish()?;
    list(delivery, &delivery.db, checked(customer).as_ref()).await
}

/// Where an address is, for service areas and distances.
pub fn place_of(address: &pb::Address) -> (String, String, Option<Point>) {
    let postal = address.postal_address.clone().unwrap_or_default();
    let point = address
        .location
        .as_ref()
        .and_then(|p| Point::parse(p.latitude_microdegrees, p.longitude_microdegrees).ok());
    (postal.country_code, postal.postal_code, point)
}
