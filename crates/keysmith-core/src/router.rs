//! The capability router: which driver serves each entrance, and what each
//! entrance can do. Built from what the drivers report.
use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use parking_lot::RwLock;

use crate::{
    driver::{Driver, DriverInfo, EntranceSpec},
    error::{bounded, quoted, reasons, Error, ErrorKind, Result},
};

/// An entrance and the driver behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutedEntrance {
    /// The name of the driver that serves it.
    pub driver: String,
    /// The entrance as that driver reports it.
    pub spec: EntranceSpec,
}

#[derive(Default)]
struct Catalog {
    entrances: HashMap<(String, String), Arc<RoutedEntrance>>,
    spaces: HashMap<(String, String), Vec<String>>,
    /// Each property's entrance ids, in a stable order.
    properties: BTreeMap<String, Vec<String>>,
}

/// What a refresh of the entrances changed: (property, entrance) pairs.
#[derive(Debug, Default)]
pub struct EntranceChanges {
    /// Entrances no driver reported before, sorted.
    pub appeared: Vec<(String, String)>,
    /// Entrances no driver reports any more, sorted. Keys that open them are
    /// left as they are: this is reported, not acted on.
    pub disappeared: Vec<(String, String)>,
    /// Drivers whose entrances could not be read; they kept their old ones.
    pub failed: Vec<(String, Error)>,
}

/// Which driver serves each entrance of each property, and which entrances
/// make up each space. A property is known only through its entrances.
///
/// The drivers are fixed when the router is made; the entrance catalog is
/// replaced whole by each [`Router::refresh`], so a reader sees the
/// catalog before a refresh or after it, never half of it.
pub struct Router {
    drivers: BTreeMap<String, Arc<dyn Driver>>,
    catalog: RwLock<Arc<Catalog>>,
}

impl Router {
    /// Registers the drivers by name and loads their entrances.
    ///
    /// Two drivers with one name are InvalidArgument `FIELD_INVALID`, and an
    /// entrance two drivers claim is Internal. A driver that cannot list its
    /// entrances yet is logged, not fatal: it serves none until a
    /// [`Router::refresh`] reads them.
    pub async fn new(drivers: Vec<Arc<dyn Driver>>) -> Result<Self> {
        let mut by_name = BTreeMap::new();
        for driver in drivers {
            let name = driver.info().name;
            if by_name.insert(name.clone(), driver).is_some() {
                return Err(Error::new(
                    ErrorKind::InvalidArgument,
                    reasons::FIELD_INVALID,
                    format!("two drivers are named {name:?}"),
                ));
            }
        }
        let router = Self {
            drivers: by_name,
            catalog: RwLock::new(Arc::default()),
        };
        let changes = router.refresh().await?;
        for (driver, error) in &changes.failed {
            tracing::warn!(driver, %error, "could not read a driver's entrances at start");
        }
        Ok(router)
    }

    /// Reloads every driver's entrances and says what changed. A driver that
    /// cannot list its entrances now (its platform is down) keeps the ones
    /// it had, so that one unreachable provider does not take the others'
    /// doors away. An entrance id claimed by two drivers in one property is
    /// an error: routing would be ambiguous.
    pub async fn refresh(&self) -> Result<EntranceChanges> {
        let old = self.catalog.read().clone();
        let mut catalog = Catalog::default();
        let mut changes = EntranceChanges::default();
        for (name, driver) in &self.drivers {
            let specs = match driver.entrances().await {
                Ok(specs) => specs,
                Err(error) => {
                    let kept: Vec<EntranceSpec> = old
                        .entrances
                        .values()
                        .filter(|e| &e.driver == name)
                        .map(|e| e.spec.clone())
                        .collect();
                    changes.failed.push((name.clone(), error));
                    kept
                }
            };
            for spec in specs {
                let id = (spec.property_id.clone(), spec.entrance_id.clone());
                for space in &spec.space_ids {
                    catalog
                        .spaces
                        .entry((spec.property_id.clone(), space.clone()))
                        .or_default()
                        .push(spec.entrance_id.clone());
                }
                catalog
                    .properties
                    .entry(spec.property_id.clone())
                    .or_default()
                    .push(spec.entrance_id.clone());
                let routed = Arc::new(RoutedEntrance {
                    driver: name.clone(),
                    spec,
                });
                if let Some(other) = catalog.entrances.insert(id.clone(), routed) {
                    return Err(Error::internal(format!(
                        "entrance {:?} of property {:?} is served by both {:?} and {:?}",
                        id.1, id.0, other.driver, name
                    )));
                }
            }
        }
        changes.appeared = catalog
            .entrances
            .keys()
            .filter(|k| !old.entrances.contains_key(*k))
            .cloned()
            .collect();
        changes.disappeared = old
            .entrances
            .keys()
            .filter(|k| !catalog.entrances.contains_key(*k))
            .cloned()
            .collect();
        changes.appeared.sort();
        changes.disappeared.sort();
        *self.catalog.write() = Arc::new(catalog);
        Ok(changes)
    }

    /// A configured driver by name, for a driver that a stored key names:
    /// FailedPrecondition `DRIVER_NOT_CONFIGURED` when it has been removed
    /// from the configuration since.
    pub fn driver(&self, name: &str) -> Result<&Arc<dyn Driver>> {
        self.drivers.get(name).ok_or_else(|| {
            Error::failed_precondition(
                reasons::DRIVER_NOT_CONFIGURED,
                format!("no driver named {} is configured", quoted(name)),
            )
            .with_context("driver", bounded(name))
        })
    }

    /// A driver by name, for a caller who named it (None when unknown).
    pub fn find_driver(&self, name: &str) -> Option<&Arc<dyn Driver>> {
        self.drivers.get(name)
    }

    /// Every configured driver as it describes itself, ordered by name.
    pub fn driver_infos(&self) -> Vec<DriverInfo> {
        self.drivers.values().map(|d| d.info()).collect()
    }

    /// The properties with at least one entrance of a driver whose
    /// capability `has` what the caller looks for, in order.
    pub fn properties_where(
        &self,
        has: impl Fn(&crate::capability::DriverCapability) -> bool,
    ) -> Vec<String> {
        let wanted: Vec<&str> = self
            .drivers
            .iter()
            .filter(|(_, d)| has(&d.info().capability))
            .map(|(name, _)| name.as_str())
            .collect();
        let catalog = self.catalog.read().clone();
        let mut out: Vec<String> = catalog
            .entrances
            .values()
            .filter(|e| wanted.contains(&e.driver.as_str()))
            .map(|e| e.spec.property_id.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Whether some driver serves an entrance of the property.
    pub fn has_property(&self, property_id: &str) -> bool {
        self.catalog.read().properties.contains_key(property_id)
    }

    /// NotFound `PROPERTY_NOT_FOUND` unless some driver serves an entrance of
    /// the property.
    pub fn require_property(&self, property_id: &str) -> Result<()> {
        if self.has_property(property_id) {
            Ok(())
        } else {
            Err(property_not_found(property_id))
        }
    }

    /// An entrance of a property with its driver; `None` when no driver
    /// serves it.
    pub fn entrance(&self, property_id: &str, entrance_id: &str) -> Option<Arc<RoutedEntrance>> {
        self.catalog
            .read()
            .entrances
            .get(&(property_id.to_owned(), entrance_id.to_owned()))
            .cloned()
    }

    /// Every entrance of a property, drivers by name and each driver's in the
    /// order it reported them; NotFound `PROPERTY_NOT_FOUND` for a property no
    /// driver serves.
    pub fn entrances_of(&self, property_id: &str) -> Result<Vec<Arc<RoutedEntrance>>> {
        let catalog = self.catalog.read().clone();
        let ids = catalog
            .properties
            .get(property_id)
            .ok_or_else(|| property_not_found(property_id))?;
        Ok(ids
            .iter()
            .filter_map(|id| {
                catalog
                    .entrances
                    .get(&(property_id.to_owned(), id.clone()))
                    .cloned()
            })
            .collect())
    }

    /// The entrances named directly and through spaces, each once, in the
    /// order given.
    ///
    /// NotFound `PROPERTY_NOT_FOUND`, `ENTRANCE_NOT_FOUND` or
    /// `SPACE_NOT_FOUND` (with a field violation on `entrance_ids[i]` or
    /// `space_ids[i]`) for the first id that names nothing.
    pub fn resolve(
        &self,
        property_id: &str,
        entrance_ids: &[String],
        space_ids: &[String],
    ) -> Result<Vec<Arc<RoutedEntrance>>> {
        let catalog = self.catalog.read().clone();
        if !catalog.properties.contains_key(property_id) {
            return Err(property_not_found(property_id));
        }
        let mut wanted: Vec<&String> = Vec::new();
        for (i, id) in entrance_ids.iter().enumerate() {
            if !catalog
                .entrances
                .contains_key(&(property_id.to_owned(), id.clone()))
            {
                return Err(Error::not_found(
                    reasons::ENTRANCE_NOT_FOUND,
                    format!(
                        "property {} has no entrance {}",
                        quoted(property_id),
                        quoted(id)
                    ),
                )
                .with_context("entrance_id", bounded(id))
                .with_violation(format!("entrance_ids[{i}]"), "no such entrance"));
            }
            wanted.push(id);
        }
        for (i, space) in space_ids.iter().enumerate() {
            let members = catalog
                .spaces
                .get(&(property_id.to_owned(), space.clone()))
                .ok_or_else(|| {
                    Error::not_found(
                        reasons::SPACE_NOT_FOUND,
                        format!(
                            "property {} has no space {}",
                            quoted(property_id),
                            quoted(space)
                        ),
                    )
                    .with_context("space_id", bounded(space))
                    .with_violation(format!("space_ids[{i}]"), "no such space")
                })?;
            wanted.extend(members.iter());
        }
        let mut seen = std::collections::HashSet::new();
        Ok(wanted
            .into_iter()
            .filter(|id| seen.insert(id.as_str()))
            .map(|id| catalog.entrances[&(property_id.to_owned(), id.clone())].clone())
            .collect())
    }
}

fn property_not_found(property_id: &str) -> Error {
    Error::not_found(
        reasons::PROPERTY_NOT_FOUND,
        format!("no property {} is configured", quoted(property_id)),
    )
    .with_context("property_id", bounded(property_id))
}
