//! Positions, great-circle distances, and the spatial index of pickup points
//! that answers "the nearest k within d metres" without scanning them all.
//!
//! The index is an R*-tree (`rstar`) over points on the unit sphere in 3D:
//! the straight-line (chord) distance between two such points grows with the
//! great-circle distance between them, so the tree's nearest-neighbour order
//! is exactly great-circle order, with no trouble at the poles or the
//! antimeridian. Distances reported are haversine metres.

use rstar::RTree;
use rstar::primitives::GeomWithData;

/// Mean Earth radius (IUGG), metres.
pub const EARTH_RADIUS_METERS: f64 = 6_371_008.8;

/// A position in integer microdegrees, validated at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    /// Latitude, -90e6 to 90e6.
    pub lat_micro: i32,
    /// Longitude, -180e6 to 180e6.
    pub lon_micro: i32,
}

impl Point {
    /// The point, or why not.
    pub fn parse(lat_micro: i32, lon_micro: i32) -> Result<Self, &'static str> {
        if !(-90_000_000..=90_000_000).contains(&lat_micro) {
            return Err("latitude must be between -90000000 and 90000000 microdegrees");
        }
        if !(-180_000_000..=180_000_000).contains(&lon_micro) {
            return Err("longitude must be between -180000000 and 180000000 microdegrees");
        }
        Ok(Self {
            lat_micro,
            lon_micro,
        })
    }

    fn radians(self) -> (f64, f64) {
        (
            (f64::from(self.lat_micro) / 1e6).to_radians(),
            (f64::from(self.lon_micro) / 1e6).to_radians(),
        )
    }

    fn unit_vector(self) -> [f64; 3] {
        let (lat, lon) = self.radians();
        [lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()]
    }

    /// Great-circle (haversine) distance in metres, unrounded.
    pub fn distance_to(self, other: Self) -> f64 {
        let (lat1, lon1) = self.radians();
        let (lat2, lon2) = other.radians();
        let h = ((lat2 - lat1) / 2.0).sin().powi(2)
            + lat1.cos() * lat2.cos() * ((lon2 - lon1) / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_METERS * h.sqrt().min(1.0).asin()
    }

    /// Great-circle distance in whole metres, rounded to the nearest.
    pub fn meters_to(self, other: Self) -> i32 {
        // At most half the Earth's circumference: about 20,015 km fits an i32.
        self.distance_to(other).round() as i32
    }
}

/// The chord length on the unit sphere for a great-circle distance.
fn chord_for(meters: f64) -> f64 {
    let angle = (meters / EARTH_RADIUS_METERS).min(std::f64::consts::PI);
    2.0 * (angle / 2.0).sin()
}

type Entry = GeomWithData<[f64; 3], usize>;

/// The active pickup points by position, immutable once built (rebuilt whole
/// when the network changes, then swapped in).
#[derive(Debug, Default)]
pub struct PointIndex<T> {
    tree: RTree<Entry>,
    items: Vec<(Point, T)>,
}

impl<T> PointIndex<T> {
    /// An index of `items`.
    pub fn build(items: Vec<(Point, T)>) -> Self {
        let entries = items
            .iter()
            .enumerate()
            .map(|(i, (point, _))| Entry::new(point.unit_vector(), i))
            .collect();
        Self {
            tree: RTree::bulk_load(entries),
            items,
        }
    }

    /// How many items it holds.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The items within `max_meters` of `from` that `keep` accepts, nearest
    /// first, at most `limit`, each with its distance in whole metres. Ties keep
    /// the order `tie` gives.
    pub fn nearest(
        &self,
        from: Point,
        max_meters: f64,
        limit: usize,
        keep: impl Fn(&T) -> bool,
        tie: impl Fn(&T, &T) -> std::cmp::Ordering,
    ) -> Vec<(&T, i32)> {
        let origin = from.unit_vector();
        // A little slack so rounding at the boundary never drops a point the
        // haversine distance would keep; the exact check follows.
        let max_chord_sq = (chord_for(max_meters) * (1.0 + 1e-9) + 1e-12).powi(2);
        let mut found: Vec<(&T, f64)> = Vec::new();
        for (entry, chord_sq) in self.tree.nearest_neighbor_iter_with_distance_2(&origin) {
            if chord_sq > max_chord_sq {
                break;
            }
            let (point, item) = &self.items[entry.data];
            if !keep(item) {
                continue;
            }
            let meters = from.distance_to(*point);
            if meters > max_meters {
                continue;
            }
            // Keep collecting past the limit only while distances tie the last.
            if found.len() >= limit
                && found
                    .last()
                    .is_some_and(|(_, last)| (meters.round() - last.round()).abs() > 0.0)
            {
                break;
            }
            found.push((item, meters));
        }
        found.sort_by(|(a, da), (b, db)| {
            (da.round() as i64)
                .cmp(&(db.round() as i64))
                .then_with(|| tie(a, b))
        });
        found.truncate(limit);
        found
            .into_iter()
            .map(|(item, meters)| (item, meters.round() as i32))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(lat: f64, lon: f64) -> Point {
        Point::parse((lat * 1e6).round() as i32, (lon * 1e6).round() as i32).unwrap()
    }

    #[test]
    fn distances_match_known_city_pairs() {
        // Berlin Brandenburg Gate to Munich Marienplatz: about 504 km.
        let berlin = p(52.516275, 13.377704);
        let munich = p(48.137154, 11.576124);
        let km = berlin.distance_to(munich) / 1000.0;
        assert!((km - 504.2).abs() < 1.0, "{km}");
        // One degree of longitude on the equator: 111.195 km.
        assert_eq!(p(0.0, 0.0).meters_to(p(0.0, 1.0)), 111_195);
    }

    #[test]
    fn the_index_finds_what_a_scan_finds() {
        let mut items = Vec::new();
        for i in 0..2000 {
            let lat = 47.0 + f64::from(i % 50) * 0.1;
            let lon = 6.0 + f64::from(i / 50) * 0.2;
            items.push((p(lat, lon), i));
        }
        let index = PointIndex::build(items.clone());
        let from = p(50.11, 8.68);
        let found: Vec<i32> = index
            .nearest(from, 60_000.0, 7, |_| true, |a, b| a.cmp(b))
            .into_iter()
            .map(|(i, _)| *i)
            .collect();
        let mut scan: Vec<(i32, i32)> = items
            .iter()
            .map(|(point, i)| (from.meters_to(*point), *i))
            .filter(|(d, _)| *d <= 60_000)
            .collect();
        scan.sort();
        let expected: Vec<i32> = scan.into_iter().take(7).map(|(_, i)| i).collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn coordinates_out_of_range_are_refused() {
        assert!(Point::parse(90_000_001, 0).is_err());
        assert!(Point::parse(0, -180_000_001).is_err());
    }
}
