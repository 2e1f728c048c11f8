//! Fuzzes MXNet optimizer-state files (`.states`, Python pickles): the restricted pickle
//! reader and the states reader must never panic, and whatever they accept, the writer
//! writes and the reader reads back to the same states.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ward_mxnet::params::StoredArray;
use ward_mxnet::pickle::{read_pickle, PickleLimits};
use ward_mxnet::states::{
    read_optimizer_states, write_optimizer_states, StateValue, StatesLimits,
};

fn dense_only(value: &StateValue) -> bool {
    match value {
        StateValue::None => true,
        StateValue::Array(StoredArray::Dense(t)) => !t.shape().is_empty(),
        StateValue::Array(_) => false,
        StateValue::Tuple(items) => items.iter().all(dense_only),
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = read_pickle(data, &PickleLimits::default());
    if let Ok(states) = read_optimizer_states(data, &StatesLimits::default()) {
        if states.states.iter().all(|(_, v)| dense_only(v)) {
            if let Ok(written) = write_optimizer_states(&states.states) {
                let again = read_optimizer_states(&written, &StatesLimits::default())
                    .expect("the writer's output reads back");
                assert_eq!(again.states, states.states);
            }
        }
    }
});
