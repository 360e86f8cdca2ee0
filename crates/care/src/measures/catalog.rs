//! Every measure the alliance reports, defined once: its id, its title, its unit, and in words
//! its numerator, denominator and exclusions. `care::measures` computes exactly these ids, the
//! API returns them with their definitions, and the console's dashboards show these words under
//! each chart — so the definition a reader sees is the one the code implements.

/// How a measure's value reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// How many.
    Count,
    /// A share, 0 to 1 (numerator ÷ denominator).
    Rate,
    /// A median in business days.
    BusinessDays,
    /// Calendar days.
    Days,
    /// A median in miles.
    Miles,
}

impl Unit {
    pub fn code(self) -> &'static str {
        match self {
            Unit::Count => "count",
            Unit::Rate => "rate",
            Unit::BusinessDays => "business-days",
            Unit::Days => "days",
            Unit::Miles => "miles",
        }
    }
}

/// Where a measure's data comes from, and so which dimensions cut it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Referrals written in the period (month: the month written; organisation: the receiver).
    Referrals,
    /// Appointments starting in the period (month: the month of the visit; organisation: the
    /// one providing the service).
    Visits,
    /// Free slots as of now, per service (no month or age band: a figure of today).
    Availability,
    /// Where each young person of the transition registry stands now, per managing
    /// organisation and age band.
    Transition,
}

/// One measure.
#[derive(Debug, Clone, Copy)]
pub struct Definition {
    pub id: &'static str,
    pub title: &'static str,
    pub unit: Unit,
    pub source: Source,
    /// Whether more is better (for a chart's reading).
    pub higher_is_better: bool,
    pub numerator: &'static str,
    pub denominator: &'static str,
    pub exclusions: &'static str,
}

/// Every measure, in the order the dashboards show them.
pub const MEASURES: &[Definition] = &[
    Definition {
        id: "referral-volume",
        title: "Referral volume",
        unit: Unit::Count,
        source: Source::Referrals,
        higher_is_better: true,
        numerator: "Referrals (Tasks of the referral kind) written in the month.",
        denominator: "None: a count.",
        exclusions: "Drafts (not sent) and referrals entered in error.",
    },
    Definition {
        id: "loop-closure",
        title: "Referral loop closure (CMS50)",
        unit: Unit::Rate,
        source: Source::Referrals,
        higher_is_better: true,
        numerator: "Patients in the denominator whose first referral's consult report came back to the referrer.",
        denominator: "Patients with a referral written in the period, counted once by their first referral in it (CMS50v13).",
        exclusions: "Referrals entered in error; a patient's later referrals in the same period.",
    },
    Definition {
        id: "days-to-accept",
        title: "Median business days to accept",
        unit: Unit::BusinessDays,
        source: Source::Referrals,
        higher_is_better: false,
        numerator: "The median of business days from written to accepted, over referrals accepted.",
        denominator: "Referrals written in the month that were accepted.",
        exclusions: "Weekends and the configured holidays are not business days; referrals not accepted.",
    },
    Definition {
        id: "days-to-book",
        title: "Median business days to book",
        unit: Unit::BusinessDays,
        source: Source::Referrals,
        higher_is_better: false,
        numerator: "The median of business days from written to the first appointment booked.",
        denominator: "Referrals written in the month with an appointment booked.",
        exclusions: "Referrals never booked.",
    },
    Definition {
        id: "days-to-seen",
        title: "Median business days to seen",
        unit: Unit::BusinessDays,
        source: Source::Referrals,
        higher_is_better: false,
        numerator: "The median of business days from written to the visit that took place.",
        denominator: "Referrals written in the month whose patient was seen.",
        exclusions: "Referrals not (yet) seen.",
    },
    Definition {
        id: "days-to-report",
        title: "Median business days to the consult report",
        unit: Unit::BusinessDays,
        source: Source::Referrals,
        higher_is_better: false,
        numerator: "The median of business days from written to the consult report.",
        denominator: "Referrals written in the month with a consult report.",
        exclusions: "Referrals without a report.",
    },
    Definition {
        id: "within-service-level",
        title: "Referrals within their service level",
        unit: Unit::Rate,
        source: Source::Referrals,
        higher_is_better: true,
        numerator: "Referrals that met every milestone due so far (accepted or answered, booked, seen) by its due date.",
        denominator: "Referrals written in the month.",
        exclusions: "Milestones not yet due are not judged; a closed referral's later milestones are not due.",
    },
    Definition {
        id: "distance-miles",
        title: "Median distance from home to the site of care",
        unit: Unit::Miles,
        source: Source::Visits,
        higher_is_better: false,
        numerator: "The median straight-line miles from the centroid of the patient's home ZIP code to the site.",
        denominator: "In-person visits starting in the month (booked, arrived, checked in, fulfilled or missed) whose patient's home ZIP and site position are known.",
        exclusions: "Video visits; cancelled, proposed, pending, waitlist and entered-in-error appointments; visits without a known home or site.",
    },
    Definition {
        id: "within-30-minutes",
        title: "In-person visits within 30 minutes' drive",
        unit: Unit::Rate,
        source: Source::Visits,
        higher_is_better: true,
        numerator: "Visits whose estimated drive from home to the site is 30 minutes or less (the care finder's estimate from the distance).",
        denominator: "The in-person visits of the distance measure.",
        exclusions: "As the distance measure.",
    },
    Definition {
        id: "video-share",
        title: "Video visits",
        unit: Unit::Rate,
        source: Source::Visits,
        higher_is_better: true,
        numerator: "Visits held by video.",
        denominator: "Visits starting in the month (booked, arrived, checked in, fulfilled or missed).",
        exclusions: "Cancelled, proposed, pending, waitlist and entered-in-error appointments.",
    },
    Definition {
        id: "no-show-rate",
        title: "Missed visits (no-show)",
        unit: Unit::Rate,
        source: Source::Visits,
        higher_is_better: false,
        numerator: "Visits marked no-show.",
        denominator: "Visits that started before now and were attended (arrived, checked in, fulfilled) or missed.",
        exclusions: "Future visits, visits still booked after their time (not yet marked), cancellations.",
    },
    Definition {
        id: "third-next-available",
        title: "Third next available appointment",
        unit: Unit::Days,
        source: Source::Availability,
        higher_is_better: false,
        numerator: "Calendar days (US Eastern) from today to the day of the service's third free slot from now (IHI's measure of access).",
        denominator: "None: one figure per service, as of now.",
        exclusions: "Services with fewer than three free slots ahead have no figure; slots held for a moment count as free.",
    },
    Definition {
        id: "transition-elements-done",
        title: "Transition elements done",
        unit: Unit::Rate,
        source: Source::Transition,
        higher_is_better: true,
        numerator: "Elements of Got Transition's Six Core Elements recorded as done, over the young people of the registry.",
        denominator: "Elements that apply to each young person now (done, due or overdue), summed; by element in the detail rows.",
        exclusions: "Elements not yet due for the young person's age; young people outside 12–26.",
    },
];

/// A measure by its id.
pub fn definition(id: &str) -> Option<&'static Definition> {
    MEASURES.iter().find(|d| d.id == id)
}
