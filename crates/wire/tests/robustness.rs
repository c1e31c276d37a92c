//! No input makes the decoder panic: mutated valid frames and raw noise
//! either parse into a consistent view or fail with a typed error. This is
//! the fuzz target's property (`fuzz/`), run on every `cargo test`.

use bytes::{Bytes, BytesMut};
use mg_testkit::ProduceSpec;
use proptest::prelude::*;

fn check(frame: &Bytes) {
    mg_wire::fuzzing::exercise(frame);
}

fn small_spec() -> impl Strategy<Value = ProduceSpec> {
    (
        prop::collection::vec(
            (
                "[a-z]{0,6}",
                prop::collection::vec(
                    (
                        0u32..3,
                        prop::collection::vec(
                            prop::collection::vec(prop::collection::vec(any::<u8>(), 0..8), 0..3),
                            0..3,
                        ),
                    ),
                    0..4,
                ),
            ),
            0..4,
        ),
        any::<bool>(),
    )
        .prop_map(|(topics, read_committed)| ProduceSpec {
            topics,
            read_committed,
            timeout_ms: 10,
            ..Default::default()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn mutated_frames_never_panic(
        spec in small_spec(),
        version in 0i16..=25,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in prop::option::of(any::<prop::sample::Index>()),
        extra in prop::collection::vec(any::<u8>(), 0..4),
    ) {
        let mut frame = BytesMut::from(&spec.frame(version, 1)[..]);
        for (at, byte) in edits {
            let at = at.index(frame.len());
            frame[at] = byte;
        }
        if let Some(cut) = cut {
            frame.truncate(cut.index(frame.len() + 1));
        }
        frame.extend_from_slice(&extra);
        check(&frame.freeze());
    }

    #[test]
    fn noise_never_panics(noise in prop::collection::vec(any::<u8>(), 0..256)) {
        check(&Bytes::from(noise));
    }
}
