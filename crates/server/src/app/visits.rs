//! Video visits: a booked video Appointment carries the R5 cross-version `virtualService`
//! extension (channel type, join URL). The join URL is this server's `/visit/{token}` with a
//! 128-bit random room token kept in `video_visit`; it redirects to the video service (the
//! configured URL template with the token as the room) only within the join window — from
//! [`BookingConfig::join_opens_minutes`](super::booking::BookingConfig) before the start to the
//! end — and only while the appointment is booked, checked in or arrived. Who sees the link is
//! decided where every read is (`store::CallerTx`, `care::booking::may_see_join_link`).

use care::booking::{AppointmentStatus, JoinTime, VIRTUAL_SERVICE, join_time};
use serde_json::{Value, json};
use store::CallerTx;

use super::{App as FhirApi, Ctx};
use crate::error::ApiError;

/// The channel type code of the alliance's browser video visits.
pub use care::profile::VIRTUAL_SERVICE_CHANNEL as CHANNEL_SYSTEM;

/// Sets (or removes) an appointment's join link: a video appointment that is booked, checked
/// in or arrived gets its room's link (a room is made the first time); any other appointment
/// carries none. Clients cannot set or change it.
pub(crate) fn attach_join_link(
    tx: &mut CallerTx,
    ctx: &Ctx,
    id: &str,
    appointment: &mut Value,
) -> Result<(), ApiError> {
    let mut exts: Vec<Value> = appointment
        .get("extension")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|e| e.get("url").and_then(Value::as_str) != Some(VIRTUAL_SERVICE))
        .cloned()
        .collect();
    let video = super::appointments::is_video(appointment);
    let live = matches!(
        super::appointments::status_of(appointment),
        Some(AppointmentStatus::Booked | AppointmentStatus::CheckedIn | AppointmentStatus::Arrived)
    );
    if video && live {
        let token = match tx
            .on_behalf(store::OnBehalf::VideoRooms)
            .video_room_of(id)?
        {
            Some(t) => t,
            None => {
                // 128 bits from a cryptographically secure generator (seeded by the OS), 32 hex digits
                let t = format!("{:032x}", rand::random::<u128>());
                tx.on_behalf(store::OnBehalf::VideoRooms)
                    .video_room_add(&t, id)?;
                t
            }
        };
        let root = ctx.base_url.strip_suffix("/fhir").unwrap_or(&ctx.base_url);
        exts.push(json!({"url": VIRTUAL_SERVICE, "extension": [
            {"url": "channelType", "valueCoding": {"system": CHANNEL_SYSTEM, "code": "video-visit",
                "display": "Video visit in the browser"}},
            {"url": "addressUrl", "valueUrl": format!("{root}/visit/{token}")}
        ]}));
    }
    if exts.is_empty() {
        if let Value::Object(o) = appointment {
            o.remove("extension");
        }
    } else {
        appointment["extension"] = Value::Array(exts);
    }
    Ok(())
}

/// What `GET /visit/{token}` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Join {
    /// Go to the video room.
    Redirect(String),
    /// Not now: the status and why, in words.
    Refused(u16, String),
}

/// Decides a join: the room's appointment must be live and the window open.
pub async fn join(api: &FhirApi, token: &str) -> Result<Join, ApiError> {
    let token_ok = token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit());
    if !token_ok {
        return Ok(Join::Refused(404, "there is no such visit".into()));
    }
    let token = token.to_string();
    let config = api.config().booking.clone();
    // the link is the credential: the server looks the room up on the alliance's behalf, and
    // the use of the link is on the record (the patient's record is not shown)
    let caller = std::sync::Arc::new(super::system_caller("visit-link"));
    let work = super::Work {
        name: "join-video-visit",
        writes: false,
        alone: false,
        address: None,
        query: None,
        quiet: true,
        budgeted: true,
    };
    api.run(caller, work, api.job_ctx(), move |tx, _ctx| {
        let room = tx.on_behalf(store::OnBehalf::VideoRooms);
        let Some(id) = room.video_room_appointment(&token)? else {
            return Ok(Join::Refused(404, "there is no such visit".into()));
        };
        let Some(stored) = room
            .current("Appointment", &id, false)?
            .filter(|s| !s.deleted)
        else {
            return Ok(Join::Refused(410, "this visit no longer exists".into()));
        };
        let appointment = crate::app::resources::body(&stored);
        let patients: Vec<String> = super::appointments::participant_refs(&appointment)
            .filter_map(|r| r.strip_prefix("Patient/"))
            .map(str::to_string)
            .collect();
        tx.trail.add("Appointment", &id, &patients);
        tx.trail.description = Some("a video visit link was opened".into());
        let status = super::appointments::status_of(&appointment);
        if !matches!(
            status,
            Some(
                AppointmentStatus::Booked
                    | AppointmentStatus::CheckedIn
                    | AppointmentStatus::Arrived
            )
        ) {
            let why = match status {
                Some(AppointmentStatus::Cancelled) => "this visit was cancelled",
                Some(AppointmentStatus::Fulfilled) => "this visit is over",
                _ => "this visit is not booked",
            };
            return Ok(Join::Refused(410, why.into()));
        }
        let instant = |key: &str| {
            appointment
                .get(key)
                .and_then(Value::as_str)
                .and_then(fhir::primitive::instant_ms)
        };
        let (Some(start), Some(end)) = (instant("start"), instant("end")) else {
            return Ok(Join::Refused(409, "this visit has no time".into()));
        };
        Ok(
            match join_time(start, end, config.join_opens_minutes * 60_000, tx.now()) {
                JoinTime::Open => {
                    Join::Redirect(config.video_url_template.replace("{room}", &token))
                }
                JoinTime::TooEarly { opens_ms } => Join::Refused(
                    403,
                    format!(
                        "the visit opens at {} ({} minutes before it starts); come back then",
                        care::notify::eastern(opens_ms),
                        config.join_opens_minutes
                    ),
                ),
                JoinTime::Over => Join::Refused(410, "this visit's time is over".into()),
            },
        )
    })
    .await
}
