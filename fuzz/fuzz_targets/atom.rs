//! ATOM management bodies (src/http/atom.rs): queue, topic, subscription and rule descriptions.
//! Whatever parses is then created on a broker and exercised (so accepted durations and sizes
//! must not overflow anything later), and a parsed rule must survive render → parse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use localzure::broker::entity::EntityKind;
use localzure::broker::filter::CompiledRule;
use localzure::broker::op::Op;
use localzure::http::atom;
use localzure_fuzz::{apply, broker_with, path, sample_message, workout, T0};

fuzz_target!(|data: &[u8]| {
    let Ok(xml) = std::str::from_utf8(data) else {
        return;
    };
    let _ = atom::description_kind(xml);
    for kind in [
        EntityKind::Queue,
        EntityKind::Topic,
        EntityKind::Subscription,
    ] {
        let Ok(parsed) = atom::parse_entity(xml, kind) else {
            continue;
        };
        let mut broker = broker_with(parsed.props, parsed.default_rule);
        let _ = apply(
            &mut broker,
            T0,
            Op::Send {
                entity: "q".into(),
                messages: vec![sample_message().content.to_new_message()],
            },
        );
        let _ = apply(
            &mut broker,
            T0,
            Op::Send {
                entity: "t".into(),
                messages: vec![sample_message().content.to_new_message()],
            },
        );
        workout(&mut broker, &path("q", None), T0);
        workout(&mut broker, &path("t", Some("s")), T0);
    }
    if let Ok(rule) = atom::parse_rule(xml, "r", T0) {
        if let Ok(compiled) = CompiledRule::create(rule.clone()) {
            let mut m = sample_message();
            let _ = compiled.matches(&m);
            let _ = compiled.apply_action(&mut m);
        }
        // What the server renders, it must read back.
        let rendered = atom::rule_entry(&rule, "t", "s", "http://localhost/");
        if let Err(e) = atom::parse_rule(&rendered, "r", T0) {
            panic!("a rendered rule does not parse back: {e}\n{rendered}");
        }
    }
});
