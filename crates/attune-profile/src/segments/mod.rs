//! Segments: rule-based groups of customers over traits and zero-party data
//! (`attune.profile.v1.SegmentService`).
//!
//! `rule` is the language (parsed once, evaluated purely over `facts`), `facts`
//! what a rule is evaluated against and where it is loaded from, `store` the
//! definition and membership tables, `evaluate` how memberships follow the
//! rules (each entry and exit a row and a feed entry in one transaction),
//! `maintain` the followers of profile's own feed and of consent's changes and
//! the periodic sweep, `subject` the memberships for data-subject requests,
//! `service` the operations, `convert` and `api` the wire.

mod api;
mod convert;
mod evaluate;
pub mod facts;
mod maintain;
pub mod rule;
mod service;
mod store;
pub(crate) mod subject;

use attune_kit::config::Config;
use attune_kit::consent::ConsentChangeSource;
use attune_kit::follower::Follower;
use attune_kit::server::GrpcServer;
use attune_proto::profile::v1::segment_service_server::SegmentServiceServer;

use crate::app::Profile;

pub use api::SegmentApi;

/// Adds the segment API to `server` and starts keeping memberships current: the
/// followers of profile's feed and of consent's changes, and the sweep.
pub fn mount(server: &mut GrpcServer, profile: &Profile, config: &Config) {
    let segments = service::Segments::new(profile.clone());
    let source = segments.source().clone();
    let follower = Follower::new(
        maintain::FOLLOWER,
        profile.db.clone(),
        maintain::OwnFeed::new(profile.feed.clone()),
        maintain::Reevaluate::new(profile.clone(), source.clone()),
        &config.feeds,
    );
    server.spawn_background("profile-segments-follower", |cancel| follower.run(cancel));
    let consent_follower = Follower::new(
        maintain::CONSENT_FOLLOWER,
        profile.db.clone(),
        ConsentChangeSource::new(profile.collection.consent().clone()),
        maintain::ConsentChanged::new(profile.clone(), source.clone()),
        &config.feeds,
    );
    server.spawn_background("profile-segments-consent-follower", |cancel| {
        consent_follower.run(cancel)
    });
    let interval = profile.settings.segment_sweep_interval;
    let sweeper = profile.clone();
    server.spawn_background("profile-segments-sweep", move |cancel| {
        maintain::sweep(sweeper, source, interval, cancel)
    });
    server.add_service(attune_kit::with_limits!(
        SegmentServiceServer::new(SegmentApi::new(segments)),
        &config.limits
    ));
}
