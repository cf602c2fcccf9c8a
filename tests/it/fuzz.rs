//! Property tests over the parsers an outsider feeds: tokens, calendar
//! files and plan graphs. Short runs here (`PROPTEST_CASES` raises them);
//! `fuzz/` has cargo-fuzz targets for long ones.

use std::collections::{HashMap, HashSet};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use focusforge_auth::{KeyMaterial, Minter, Verifier};
use focusforge_planner::{ActionSpec, ActionType, Plan, PlanError};
use proptest::prelude::*;

use crate::harness::SECRET;

fn verifier() -> Verifier {
    Verifier::new(&KeyMaterial::Hs256(SECRET.as_bytes().to_vec()), None).expect("verifier")
}

fn good_token() -> String {
    Minter::new(&KeyMaterial::Hs256(SECRET.as_bytes().to_vec()), None)
        .expect("minter")
        .mint(&focusforge_core::UserId::parse("alice").expect("user"), 600)
        .expect("mint")
}

/// The decoded parts of a token, to tell a real change from a base64
/// spelling of the same bytes.
fn decoded(token: &str) -> Vec<Vec<u8>> {
    token
        .split('.')
        .map(|p| {
            URL_SAFE_NO_PAD
                .decode(p)
                .unwrap_or_else(|_| p.as_bytes().to_vec())
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_string_is_refused_as_a_token_without_a_panic(s in ".{0,600}") {
        prop_assert!(verifier().verify(&s).is_err());
    }

    #[test]
    fn a_token_changed_anywhere_is_refused(at in 0usize..400, byte in 0x21u8..0x7f) {
        let token = good_token();
        let mut bytes = token.clone().into_bytes();
        let at = at % bytes.len();
        prop_assume!(bytes[at] != byte);
        bytes[at] = byte;
        let tampered = String::from_utf8(bytes).expect("ascii");
        if verifier().verify(&tampered).is_ok() {
            // Only a different spelling of the very same bytes may pass.
            prop_assert_eq!(decoded(&tampered), decoded(&token));
        }
    }

    #[test]
    fn any_calendar_file_imports_or_fails_with_a_line_never_a_panic(
        lines in proptest::collection::vec(
            prop_oneof![
                Just("BEGIN:VCALENDAR".to_owned()),
                Just("END:VCALENDAR".to_owned()),
                Just("BEGIN:VEVENT".to_owned()),
                Just("END:VEVENT".to_owned()),
                Just("DTSTART:20261207T090000Z".to_owned()),
                Just("DTEND:20261207T100000Z".to_owned()),
                Just("DTSTART;TZID=Europe/Paris:20261207T090000".to_owned()),
                Just("DTSTART;VALUE=DATE:20261207".to_owned()),
                Just("RRULE:FREQ=DAILY;COUNT=100000".to_owned()),
                Just("RRULE:FREQ=SECONDLY".to_owned()),
                Just("DURATION:PT99999999H".to_owned()),
                Just("UID:x".to_owned()),
                Just("SUMMARY:hello\\, world".to_owned()),
                Just(" folded continuation".to_owned()),
                "[A-Z;=:/0-9TZ-]{0,40}",
                ".{0,80}",
            ],
            0..40,
        )
    ) {
        let text = lines.join("\r\n");
        let tz: chrono_tz::Tz = "UTC".parse().expect("utc");
        match focusforge_calendar::ics::import(&text, tz) {
            Ok(events) => prop_assert!(events.len() <= lines.len()),
            Err(e) => prop_assert!(e.line <= lines.len() + 1, "line {} of {}", e.line, lines.len()),
        }
    }

    #[test]
    fn a_plan_is_accepted_exactly_when_its_dependencies_are_known_and_acyclic(
        n in 1usize..12,
        edges in proptest::collection::vec((0usize..14, 0usize..14), 0..30),
    ) {
        let mut specs: Vec<ActionSpec> = (0..n)
            .map(|i| ActionSpec::new(format!("a{i}"), ActionType::Notification))
            .collect();
        let mut graph: HashMap<usize, HashSet<usize>> = HashMap::new();
        let mut unknown = false;
        for (from, to) in &edges {
            if *from >= n {
                continue;
            }
            if *to >= n {
                unknown = true;
            } else {
                graph.entry(*from).or_default().insert(*to);
            }
            specs[*from].depends_on.push(format!("a{to}"));
        }
        let result = Plan::new(specs, Utc::now());
        if unknown {
            let is_unknown = matches!(result, Err(PlanError::UnknownDependency { .. }));
            prop_assert!(is_unknown, "{:?}", result);
        } else if has_cycle(n, &graph) {
            let is_cycle = matches!(result, Err(PlanError::Cycle(_)));
            prop_assert!(is_cycle, "{:?}", result);
        } else {
            prop_assert!(result.is_ok(), "{:?}", result);
        }
    }
}

/// Depth-first search for a back edge (a self-dependency is a cycle).
fn has_cycle(n: usize, graph: &HashMap<usize, HashSet<usize>>) -> bool {
    fn visit(v: usize, g: &HashMap<usize, HashSet<usize>>, state: &mut [u8]) -> bool {
        state[v] = 1;
        for &w in g.get(&v).into_iter().flatten() {
            if state[w] == 1 || (state[w] == 0 && visit(w, g, state)) {
                return true;
            }
        }
        state[v] = 2;
        false
    }
    let mut state = vec![0u8; n];
    (0..n).any(|v| state[v] == 0 && visit(v, graph, &mut state))
}
