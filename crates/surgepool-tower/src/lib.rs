//! Adaptive admission control for tower services (axum, hyper, tonic).
//! (Skeleton: the implementation lands with the tower issue.)
