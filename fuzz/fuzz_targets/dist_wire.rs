//! Fuzzes the parameter store's wire format (ward-dist `wire`), which every RPC of a
//! cluster decodes from a peer: the first byte picks the message. Decoding may refuse but
//! never panic or allocate beyond the bytes given; what it accepts is canonical (its
//! encoding is exactly the bytes it was read from).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ward_dist::wire::{
    Empty, Failure, Heartbeat, JobDescription, JobState, JoinRequest, Kept, Message,
    PullRequest, ShardSaved, Tensors,
};

fn check<M: Message>(bytes: &[u8]) {
    if let Ok(m) = M::from_bytes(bytes) {
        assert_eq!(m.to_bytes(), bytes, "{} is not canonical", M::NAME);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 10 {
        0 => check::<Tensors>(rest),
        1 => check::<JobDescription>(rest),
        2 => check::<JoinRequest>(rest),
        3 => check::<JobState>(rest),
        4 => check::<Heartbeat>(rest),
        5 => check::<Failure>(rest),
        6 => check::<PullRequest>(rest),
        7 => check::<Empty>(rest),
        8 => check::<ShardSaved>(rest),
        _ => check::<Kept>(rest),
    }
});
