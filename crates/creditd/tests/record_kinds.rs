//! Record kinds share one namespace in the store, whichever crate declares
//! them: every crate that keeps records lists its kinds, and none of them
//! may take a name another has.

use std::collections::HashMap;

#[test]
fn no_two_kinds_of_record_share_a_name() {
    let crates = [
        ("server", server::RECORD_KINDS),
        ("billing", billing::RECORD_KINDS),
        ("gateway", gateway::RECORD_KINDS),
        ("dashboard", dashboard::RECORD_KINDS),
        ("webhooks", webhooks::RECORD_KINDS),
    ];
    let mut declared_by: HashMap<&str, &str> = HashMap::new();
    for (name, kinds) in crates {
        assert!(!kinds.is_empty(), "{name} lists no kind");
        for kind in kinds {
            if let Some(first) = declared_by.insert(kind, name) {
                panic!("the record kind {kind:?} is declared by {first} and by {name}");
            }
        }
    }
}
