"""The linear algebra of subspace editing: bases of rows, projections off them, Gram-Schmidt.

Pure functions of tensors (and one growing buffer), no model and no state: O-Edit's edit basis, knowledge
subspace and O-Edit+'s update basis are built and used with these.
"""

from __future__ import annotations

import torch

# Bases are stored as rows: a (m x dim) tensor with orthonormal rows spans an m-dimensional subspace.


def project_out(matrix: torch.Tensor, basis: torch.Tensor | None, side: str) -> torch.Tensor:
    """`matrix` (d_out x d_in) with the span of `basis` removed: from its rows (input) or its columns (output)."""
    if basis is None or basis.shape[0] == 0:
        return matrix
    b = basis.to(matrix.dtype)
    if side == "input":
        return matrix - (matrix @ b.T) @ b
    return matrix - b.T @ (b @ matrix)


def orthonormal_rows(vectors: torch.Tensor, tol: float = 1e-4) -> torch.Tensor:
    """An orthonormal basis (rows) of the span of `vectors`' rows, without directions of size below `tol`."""
    if vectors.shape[0] == 0:
        return vectors
    _, s, vh = torch.linalg.svd(vectors, full_matrices=False)
    return vh[s > tol]


def extend_basis(basis: torch.Tensor, new: torch.Tensor, tol: float = 1e-4) -> torch.Tensor:
    """`basis` followed by the part of span(new) it does not cover yet, orthonormal.

    `new`'s rows are unit vectors; what is left of them after removing `basis` (twice: one pass of
    classical Gram-Schmidt loses orthogonality in float32) is kept when larger than `tol`.
    """
    for _ in range(2):
        if basis.shape[0]:
            new = new - (new @ basis.T) @ basis
    return torch.cat([basis, orthonormal_rows(new, tol)])


def remove_overlap(basis: torch.Tensor, other: torch.Tensor, tol: float = 1e-4) -> torch.Tensor:
    """An orthonormal basis of the part of span(basis) orthogonal to span(other)."""
    if basis.shape[0] == 0 or other.shape[0] == 0:
        return basis
    for _ in range(2):
        basis = basis - (basis @ other.T) @ other
    return orthonormal_rows(basis, tol)


def core_directions(delta: torch.Tensor, energy: float, side: str, max_directions: int = 0,
                    rel_tol: float = 1e-6) -> torch.Tensor:
    """The core gradient space of an update: its fewest singular directions holding `energy` of sum(S^2).

    Rows of V^T (input side: directions in the key space) or columns of U (output side), as rows.
    Singular values below rel_tol x the largest are numerical noise and never kept.
    """
    u, s, vh = torch.linalg.svd(delta.float(), full_matrices=False)
    if s.numel() == 0 or s[0] <= 0:
        return delta.new_zeros(0, delta.shape[1] if side == "input" else delta.shape[0]).float()
    s2 = s.double() ** 2
    share = torch.cumsum(s2, 0) / s2.sum()
    r = int((share < energy - 1e-12).sum()) + 1  # energy 1.0: every direction above the noise floor
    r = min(r, int((s > rel_tol * s[0]).sum()))
    if max_directions:
        r = min(r, max_directions)
    return vh[:r] if side == "input" else u[:, :r].T


class GrowingRows:
    """A (n x width) float tensor that grows by rows without copying everything each time (capacity doubles)."""

    def __init__(self, width: int, rows: torch.Tensor | None = None):
        self._data = torch.zeros(0, width) if rows is None else rows.clone()
        self.n = self._data.shape[0]

    @property
    def rows(self) -> torch.Tensor:
        return self._data[: self.n]

    def append(self, rows: torch.Tensor) -> None:
        need = self.n + rows.shape[0]
        if need > self._data.shape[0]:
            grown = torch.zeros(max(need, 2 * self._data.shape[0], 4), self._data.shape[1], dtype=self._data.dtype)
            grown[: self.n] = self.rows
            self._data = grown
        self._data[self.n:need] = rows.to(self._data.dtype)
        self.n = need


def gram_schmidt(vector: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """`vector` minus its projection on the span of `basis`' orthonormal rows (two passes, for float32)."""
    for _ in range(2):
        if basis.shape[0]:
            vector = vector - basis.T @ (basis @ vector)
    return vector
