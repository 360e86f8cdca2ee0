//! `POST /fhir/Appointment/$hold` and `POST /fhir/Appointment/$book` (IHE ITI-116/117
//! shapes): a slot held for a patient or booked, of concurrent requests for one slot exactly
//! one succeeding (`app::booking`).

use store::CallerTx;

use super::{Input, Level, Operation};
use crate::app::Ctx;
use crate::app::booking::{BookingRequest, hold_or_book, refusal_before_writing};
use crate::app::params::{bad, reference};
use crate::error::ApiError;
use crate::rest::execute::Outcome;

pub const HOLD: Operation = Operation {
    name: "hold",
    code: "hold",
    resource_type: Some("Appointment"),
    level: Level::Type,
    writes: true,
    definition: "https://profiles.ihe.net/ITI/Scheduling/OperationDefinition/appointment-hold",
    documentation: "POST Appointment/$hold with Parameters slot and patient (valueReference): a pending Appointment and the Slot busy-tentative for 10 minutes; 409 when the slot is taken or held.",
    usage: "$hold takes a Parameters resource with 'slot' and 'patient'",
    run: run_hold,
    precheck: Some(precheck_hold),
};

pub const BOOK: Operation = Operation {
    name: "book",
    code: "book",
    resource_type: Some("Appointment"),
    level: Level::Type,
    writes: true,
    definition: "https://profiles.ihe.net/ITI/Scheduling/OperationDefinition/appointment-book",
    documentation: "POST Appointment/$book with Parameters slot and patient, or the held appointment (its slot is taken when none is named), and optionally basedOn (the referral's ServiceRequest: its referral is then scheduled), valueReferences: a booked Appointment (in a Bundle) and the Slot busy; of concurrent holds or books of one slot exactly one succeeds, the rest get 409.",
    usage: "$book takes a Parameters resource with 'slot' and 'patient', or the held 'appointment'",
    run: run_book,
    precheck: Some(precheck_book),
};

fn run_hold(tx: &mut CallerTx, ctx: &Ctx, input: Input) -> Result<Outcome, ApiError> {
    let request = parse(true, &input.params)?;
    Ok(Outcome::Json(200, hold_or_book(tx, ctx, request)?))
}

fn run_book(tx: &mut CallerTx, ctx: &Ctx, input: Input) -> Result<Outcome, ApiError> {
    let request = parse(false, &input.params)?;
    Ok(Outcome::Json(200, hold_or_book(tx, ctx, request)?))
}

fn precheck_hold(tx: &mut CallerTx, _: &Ctx, input: &Input) -> Result<(), ApiError> {
    refusal_before_writing(tx, &parse(true, &input.params)?)
}

fn precheck_book(tx: &mut CallerTx, _: &Ctx, input: &Input) -> Result<(), ApiError> {
    refusal_before_writing(tx, &parse(false, &input.params)?)
}

fn parse(hold: bool, params: &serde_json::Value) -> Result<BookingRequest, ApiError> {
    let op = if hold { "$hold" } else { "$book" };
    crate::app::params::parameter_list(
        params,
        op,
        &["slot", "patient", "appointment", "basedOn"],
        &[],
    )?;
    let based_on = reference(params, "basedOn", "ServiceRequest")?;
    let slot_id = reference(params, "slot", "Slot")?;
    let patient_id = reference(params, "patient", "Patient")?;
    let held = reference(params, "appointment", "Appointment")?;
    if slot_id.is_none() && (hold || held.is_none()) {
        return Err(bad(
            "slot",
            format!(
                "{op} needs 'slot', a valueReference to the Slot{}",
                if hold {
                    ""
                } else {
                    " (or the held 'appointment')"
                }
            ),
        ));
    }
    if hold && held.is_some() {
        return Err(bad(
            "appointment",
            "$hold makes a new appointment; book a hold with $book",
        ));
    }
    if held.is_none() && patient_id.is_none() {
        return Err(bad(
            "patient",
            format!("{op} needs 'patient' (or, for $book, the held 'appointment')"),
        ));
    }
    Ok(BookingRequest {
        hold,
        slot_id,
        patient_id,
        held,
        based_on,
    })
}
