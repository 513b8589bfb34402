//! ListEncoders: the card encoders of a property, read from its drivers, so
//! that an operator can find the `encoder_id` EncodeKey takes.
use crate::{error::Result, request::Violations};

use super::AccessService;

/// A card encoder of a property and the driver it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoder {
    /// The driver that encodes at it.
    pub driver: String,
    /// The id EncodeKey takes as `encoder_id`.
    pub encoder_id: String,
    /// For people.
    pub name: String,
}

impl AccessService {
    /// Every card encoder of the property at the drivers that serve it and
    /// encode (capability `encode`), by driver name, each driver's in its
    /// own order. Checks the id; NotFound `PROPERTY_NOT_FOUND` when no
    /// driver serves the property. Reads only; a driver that cannot answer
    /// fails the call with its error (nothing is cached).
    pub async fn list_encoders(&self, property_id: &str) -> Result<Vec<Encoder>> {
        let mut v = Violations::default();
        v.id("property_id", property_id);
        v.finish()?;
        let mut drivers: Vec<String> = self
            .router
            .entrances_of(property_id)?
            .iter()
            .map(|e| e.driver.clone())
            .collect();
        drivers.sort();
        drivers.dedup();
        let mut out = Vec::new();
        for name in drivers {
            let Some(driver) = self.router.find_driver(&name) else {
                continue;
            };
            if !driver.info().capability.encode {
                continue;
            }
            for e in driver.encoders(property_id).await? {
                out.push(Encoder {
                    driver: name.clone(),
                    encoder_id: e.encoder_id,
                    name: e.name,
                });
            }
        }
        Ok(out)
    }
}
