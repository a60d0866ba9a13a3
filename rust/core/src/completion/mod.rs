//! Matrix completion by alternating minimization: one half-step solves, for every row `i` of a
//! CSR matrix of observed entries, the ridge regression
//!
//! ```text
//!     x_i = argmin_x  sum_{j in Omega_i} (M_ij - <F_j, x>)^2 + reg_i |x|^2
//! ```
//!
//! against the fixed factor `F` (n x k, row-major). Two solvers:
//!
//! * exact: the k x k normal matrix `G_i = sum_j F_j F_j^T + reg_i I` is formed (O(|Omega_i| k^2))
//!   and solved by Cholesky;
//! * CG: preconditioned conjugate gradient on the same system without forming `G_i`, each product
//!   costs O(|Omega_i| k). The preconditioner is the expected normal matrix under uniform sampling,
//!   `P_i = (|Omega_i| / n) F^T F + reg_i I`, applied through one eigendecomposition
//!   `F^T F / n = Q diag(lam) Q^T` shared by all rows (O(k^2) per application). CG starts from the
//!   previous iterate (warm start) and stops at a relative residual `cg_tol`.
//!
//! Rows run in parallel (rayon) and are independent.

mod fixed;
mod product;
mod rows;
mod solve;
mod transpose;

pub use product::csr_times_dense;
pub use solve::{observed_sq_error, solve_rows, ColIndex, HalfStep, RowProblem, RowSolver};
pub use transpose::{csr_transpose, Columns, RowNumbers};
