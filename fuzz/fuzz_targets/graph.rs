//! `graph.json` from a package: parse, validate, then infer shapes for a few input shapes.
//! Nothing may panic, hang or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ward_graph::shape::infer_shapes;
use ward_graph::Graph;

const SHAPES: [&[usize]; 4] = [&[1, 3, 8, 8], &[2, 4], &[3, 5, 7], &[2, 1, 28, 28]];

fuzz_target!(|data: &[u8]| {
    if let Ok(graph) = Graph::from_json(data) {
        for shape in SHAPES {
            let inputs = vec![shape.to_vec(); graph.inputs.len()];
            let _ = infer_shapes(&graph, &inputs);
        }
    }
});
