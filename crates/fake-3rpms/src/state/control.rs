//! The world as tests change it (the control API): hotels, reservations and
//! stays arranged, moved, split, deleted; keys assigned or expired as staff
//! or 3RPMS itself would. Misuse (an unknown hotel or id) is a bug in the
//! test, so these panic with a clear message instead of returning errors
//! nobody would check.

use jiff::civil::Date;

use super::{Event, World};
use crate::model::{Hotel, Key, KeyKind, Reservation, ReservationStatus, Stay};

impl World {
    pub fn hotel_or_panic(&mut self, hotel: &str) -> &mut Hotel {
        self.hotels
            .get_mut(hotel)
            .unwrap_or_else(|| panic!("fake-3rpms: unknown hotel {hotel:?}"))
    }

    pub fn add_reservation(&mut self, hotel: &str, code: &str) -> (String, Vec<Event>) {
        let h = self.hotel_or_panic(hotel);
        let id = h.new_alnum_id();
        h.reservations.insert(
            id.clone(),
            Reservation {
                id: id.clone(),
                code: code.to_string(),
                status: ReservationStatus::Confirmed,
            },
        );
        (
            id.clone(),
            vec![Event::new(hotel, "reservation.created", &id)],
        )
    }

    pub fn set_reservation_status(
        &mut self,
        hotel: &str,
        id: &str,
        status: ReservationStatus,
    ) -> Vec<Event> {
        let h = self.hotel_or_panic(hotel);
        let r = h
            .reservations
            .get_mut(id)
            .unwrap_or_else(|| panic!("fake-3rpms: unknown reservation {id:?}"));
        r.status = status;
        vec![Event::updated(
            hotel,
            "reservation.updated",
            id,
            &["status"],
        )]
    }

    pub fn add_stay(
        &mut self,
        hotel: &str,
        reservation_id: &str,
        room_setup_id: &str,
        from: Date,
        to: Date,
    ) -> (String, Vec<Event>) {
        let h = self.hotel_or_panic(hotel);
        assert!(
            h.reservations.contains(reservation_id),
            "fake-3rpms: unknown reservation {reservation_id:?}"
        );
        assert!(
            h.rooms.contains_key(room_setup_id),
            "fake-3rpms: unknown room setup {room_setup_id:?}"
        );
        assert!(from < to, "fake-3rpms: a stay must end after it starts");
        let id = h.new_numeric_id();
        h.stays.insert(
            id.clone(),
            Stay {
                id: id.clone(),
                reservation_id: reservation_id.to_string(),
                room_setup_id: room_setup_id.to_string(),
                from,
                to,
                key_id: None,
            },
        );
        (
            id.clone(),
            vec![Event::new(hotel, "room_stay.created", &id)],
        )
    }

    fn stay_or_panic<'h>(h: &'h mut Hotel, stay_id: &str) -> &'h mut Stay {
        h.stays
            .get_mut(stay_id)
            .unwrap_or_else(|| panic!("fake-3rpms: unknown room stay {stay_id:?}"))
    }

    pub fn move_stay(&mut self, hotel: &str, stay_id: &str, room_setup_id: &str) -> Vec<Event> {
        let h = self.hotel_or_panic(hotel);
        assert!(
            h.rooms.contains_key(room_setup_id),
            "fake-3rpms: unknown room setup {room_setup_id:?}"
        );
        Self::stay_or_panic(h, stay_id).room_setup_id = room_setup_id.to_string();
        vec![Event::updated(
            hotel,
            "room_stay.updated",
            stay_id,
            &["room_setup"],
        )]
    }

    pub fn change_stay_dates(
        &mut self,
        hotel: &str,
        stay_id: &str,
        from: Date,
        to: Date,
    ) -> Vec<Event> {
        assert!(from < to, "fake-3rpms: a stay must end after it starts");
        let stay = Self::stay_or_panic(self.hotel_or_panic(hotel), stay_id);
        stay.from = from;
        stay.to = to;
        vec![Event::updated(
            hotel,
            "room_stay.updated",
            stay_id,
            &["reservation_from", "reservation_to"],
        )]
    }

    pub fn delete_stay(&mut self, hotel: &str, stay_id: &str) -> Vec<Event> {
        let h = self.hotel_or_panic(hotel);
        h.stays
            .remove(stay_id)
            .unwrap_or_else(|| panic!("fake-3rpms: unknown room stay {stay_id:?}"));
        vec![Event::new(hotel, "room_stay.deleted", stay_id)]
    }

    pub fn split_stay(&mut self, hotel: &str, stay_id: &str, at: Date) -> (String, Vec<Event>) {
        let h = self.hotel_or_panic(hotel);
        let new_id = h.new_numeric_id();
        let stay = Self::stay_or_panic(h, stay_id);
        assert!(
            stay.from < at && at < stay.to,
            "fake-3rpms: split date must lie inside the stay"
        );
        let second = Stay {
            id: new_id.clone(),
            from: at,
            ..stay.clone()
        };
        stay.to = at;
        h.stays.insert(new_id.clone(), second);
        (
            new_id.clone(),
            vec![
                Event::updated(hotel, "room_stay.updated", stay_id, &["reservation_to"]),
                Event::new(hotel, "room_stay.created", &new_id),
            ],
        )
    }

    pub fn expire_key(&mut self, hotel: &str, key_id: &str) -> Vec<Event> {
        let h = self.hotel_or_panic(hotel);
        h.keys
            .remove(key_id)
            .unwrap_or_else(|| panic!("fake-3rpms: unknown room access key {key_id:?}"));
        for stay in h.stays.values_mut() {
            if stay.key_id.as_deref() == Some(key_id) {
                stay.key_id = None;
            }
        }
        vec![Event::new(hotel, "room_access_key.deleted", key_id)]
    }

    pub fn add_foreign_key(&mut self, hotel: &str, integration: &str, kind: KeyKind) -> String {
        let h = self.hotel_or_panic(hotel);
        let id = h.new_alnum_id();
        h.keys.insert(
            id.clone(),
            Key {
                id: id.clone(),
                integration: integration.to_string(),
                kind,
            },
        );
        id
    }

    /// Removes a webhook endpoint, as hotel staff would in 3RPMS.
    pub fn remove_endpoint(&mut self, hotel: &str, endpoint_id: &str) {
        self.hotel_or_panic(hotel)
            .endpoints
            .remove(endpoint_id)
            .unwrap_or_else(|| panic!("fake-3rpms: unknown webhook endpoint {endpoint_id:?}"));
    }

    /// Assigns (or replaces) a stay's key as staff in 3RPMS would, outside
    /// the API's one-key rule.
    pub fn assign_key(&mut self, hotel: &str, stay_id: &str, key_id: &str) -> Vec<Event> {
        let h = self.hotel_or_panic(hotel);
        assert!(
            h.keys.contains(key_id),
            "fake-3rpms: unknown room access key {key_id:?}"
        );
        Self::stay_or_panic(h, stay_id).key_id = Some(key_id.to_string());
        vec![Event::updated(
            hotel,
            "room_stay.updated",
            stay_id,
            &["roomAccessKey"],
        )]
    }
}
