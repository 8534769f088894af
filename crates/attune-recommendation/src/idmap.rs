//! Hash maps and sets keyed by ids (items, customers, categories, brands),
//! hashed with foldhash instead of the default SipHash. Answers look ids up
//! by the hundred per call, where SipHash and its setup cost more than the
//! comparison it guards. The keys held come from the catalogue and the
//! trained snapshot (the retailer's own ids, not chosen per request), and
//! foldhash's per-process random seed still keeps a table's layout unknown
//! to a caller; a request's ids are only looked up, never inserted at scale.

/// A map from an id to `V`.
pub type IdMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// A set of ids.
pub type IdSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
