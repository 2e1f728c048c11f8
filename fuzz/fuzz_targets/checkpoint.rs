//! Fuzzes what a checkpoint's parsers read once its signature is verified and its state
//! decrypted: the first byte picks `checkpoint.json` (the index) or the decrypted state
//! (a safetensors file with the `ward.state` header). Neither may panic; what either
//! accepts must survive its own writer and read back the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ward_package::layout::Index;
use ward_train::checkpoint::{decode_state, encode_state, CheckpointIndex, ParamView};
use ward_train::optim::ParamState;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    if which % 2 == 0 {
        let Ok(index) = CheckpointIndex::parse(rest) else {
            return;
        };
        let back = CheckpointIndex::parse(&index.to_json()).expect("ward reads its own index");
        assert_eq!(back, index);
        return;
    }
    let Ok(state) = decode_state(rest) else {
        return;
    };
    let states: Vec<ParamState> = state
        .params
        .iter()
        .map(|p| ParamState {
            update_count: p.update_count,
            // Static names for the round trip: the fuzzer's names are data here.
            tensors: p.tensors.iter().map(|(_, t)| ("s", t.clone())).collect(),
        })
        .collect();
    if state.params.iter().any(|p| p.tensors.iter().any(|(n, _)| n != "s")) {
        return;
    }
    let views: Vec<ParamView<'_>> = state
        .params
        .iter()
        .zip(&states)
        .map(|(p, s)| ParamView {
            name: &p.name,
            trainable: p.trainable,
            shape: &p.shape,
            weight: &p.weight,
            state: s,
        })
        .collect();
    let Ok(bytes) = encode_state(&state.info, &views) else {
        return;
    };
    let back = decode_state(&bytes).expect("ward reads its own state");
    assert_eq!(back.info, state.info);
    assert_eq!(back.params.len(), state.params.len());
    for (a, b) in back.params.iter().zip(&state.params) {
        assert_eq!(a.name, b.name);
        assert_eq!(a.shape, b.shape);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&a.weight), bits(&b.weight));
    }
});
