//! The forward pass of MXNet 1.9.1's loss-head and gradient-control operators. Their
//! labels and settings (`grad_scale`, `normalization`, …) shape only the gradient.

use super::activation::sigmoid;
use super::{Array, KResult};

/// `LinearRegressionOutput`: the identity.
pub fn linear_regression_output(x: &Array) -> KResult<Array> {
    Ok(x.clone())
}

/// `LogisticRegressionOutput`: the logistic sigmoid 1/(1 + e^−x).
pub fn logistic_regression_output(x: &Array) -> KResult<Array> {
    Ok(x.map(sigmoid))
}

/// `MAERegressionOutput`: the identity.
pub fn mae_regression_output(x: &Array) -> KResult<Array> {
    Ok(x.clone())
}

/// `MakeLoss`: the identity (its `grad_scale` and `normalization` scale the gradient).
pub fn make_loss(x: &Array) -> KResult<Array> {
    Ok(x.clone())
}

/// `BlockGrad` (`stop_gradient`): the identity with no gradient.
pub fn block_grad(x: &Array) -> KResult<Array> {
    Ok(x.clone())
}

/// `Dropout` at inference (mode `training`, the default): the identity.
pub fn dropout_inference(x: &Array) -> KResult<Array> {
    Ok(x.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_passes() {
        let x = Array::vector(&[-1.0, 0.0, 2.0]);
        assert_eq!(linear_regression_output(&x).unwrap(), x);
        assert_eq!(mae_regression_output(&x).unwrap(), x);
        assert_eq!(make_loss(&x).unwrap(), x);
        assert_eq!(block_grad(&x).unwrap(), x);
        assert_eq!(dropout_inference(&x).unwrap(), x);
        assert_eq!(logistic_regression_output(&x).unwrap().data[1], 0.5);
    }
}
