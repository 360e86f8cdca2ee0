//! The identity review queue's state machine: a pair of records graded probable or possible
//! waits (`pending`); a reviewer links it (`linked`), says the records are not one person
//! (`rejected` — never proposed again), or undoes a link (`unlinked`); an alliance
//! administrator may put a rejected pair back in the queue.

/// A reviewer's decision on a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Accept,
    Reject,
    Unlink,
    Reopen,
}

impl Decision {
    pub fn parse(s: &str) -> Option<Decision> {
        Some(match s {
            "accept" => Decision::Accept,
            "reject" => Decision::Reject,
            "unlink" => Decision::Unlink,
            "reopen" => Decision::Reopen,
            _ => return None,
        })
    }

    /// The state a pair in `state` moves to, or why the move is refused.
    pub fn next_state(self, state: &str, administrator: bool) -> Result<&'static str, Refused> {
        match (self, state) {
            (Decision::Accept, "pending" | "unlinked") => Ok("linked"),
            (Decision::Accept, "rejected") => Err(Refused::State(
                "this pair was rejected as not the same person; an alliance administrator can reopen it (POST …/reopen), then it can be accepted".into(),
            )),
            (Decision::Reject, "pending" | "linked" | "unlinked") => Ok("rejected"),
            (Decision::Unlink, "linked") => Ok("unlinked"),
            (Decision::Reopen, "rejected") if administrator => Ok("pending"),
            (Decision::Reopen, "rejected") => {
                Err(Refused::NotAllowed(
                    "only an alliance administrator (a signed-in user with that role) can reopen a rejected pair".into(),
                ))
            }
            (d, s) => Err(Refused::State(format!(
                "a pair that is {s} cannot be {}",
                match d {
                    Decision::Accept => "accepted",
                    Decision::Reject => "rejected",
                    Decision::Unlink => "unlinked (only a linked pair can)",
                    Decision::Reopen => "reopened (only a rejected pair can)",
                }
            ))),
        }
    }
}

/// Why a decision was refused: the caller may not make it (403), or the pair's state does not
/// allow it (409).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    NotAllowed(String),
    State(String),
}

impl Refused {
    pub fn message(&self) -> &str {
        match self {
            Refused::NotAllowed(m) | Refused::State(m) => m,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_move_and_the_forbidden_ones() {
        use Decision::*;
        let ok = |d: Decision, s: &str| d.next_state(s, false).unwrap();
        assert_eq!(ok(Accept, "pending"), "linked");
        assert_eq!(ok(Accept, "unlinked"), "linked");
        assert_eq!(ok(Reject, "pending"), "rejected");
        assert_eq!(ok(Reject, "linked"), "rejected");
        assert_eq!(ok(Reject, "unlinked"), "rejected");
        assert_eq!(ok(Unlink, "linked"), "unlinked");
        assert_eq!(Reopen.next_state("rejected", true), Ok("pending"));
        // forbidden: a rejected pair is closed until an administrator reopens it
        let no = |d: Decision, s: &str, admin: bool| {
            d.next_state(s, admin).unwrap_err().message().to_string()
        };
        assert!(no(Accept, "rejected", true).contains("administrator can reopen"));
        assert!(no(Reopen, "rejected", false).contains("only an alliance administrator"));
        assert!(matches!(
            Reopen.next_state("rejected", false),
            Err(Refused::NotAllowed(_))
        ));
        assert!(matches!(
            Accept.next_state("rejected", true),
            Err(Refused::State(_))
        ));
        assert!(no(Unlink, "pending", true).contains("only a linked pair"));
        assert!(no(Reopen, "pending", true).contains("only a rejected pair"));
        assert!(no(Accept, "linked", true).contains("cannot be accepted"));
        assert!(no(Reject, "rejected", true).contains("cannot be rejected"));
    }
}
