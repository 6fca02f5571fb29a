"""Parametric knowledge transfer, the extraction half: from a teacher's weights to a LoRA init of the student.

The paper's steps, each a function here, in order:

1. **sensitivity** (`sensitivity`): over a few seed examples of the task, the teacher's |θ ⊙ ∇θ L| summed per
   example, the loss taken on the answer tokens only;
2. **layer selection** (`select_layers`): as many teacher layers as the student has, the most sensitive ones
   (a layer's sensitivity is the sum over its parameters), kept in their original order;
3. **dimension alignment** (`best_window`): per matrix, the contiguous sub-matrix of the student's shape with
   the largest total sensitivity, found with a summed-area table in one vectorised scan;
4. **factorisation** (`svd_factors`): the extracted matrix's truncated SVD at rank r gives LoRA B = U_r Σ_r and
   A = V_rᵀ; the student's weight loses the adapter's product, so the student is unchanged at initialisation.

The controls replace one step each (`ARMS`): standard LoRA init, random layers, a random sub-matrix, a random
matrix with the extracted matrix's singular spectrum, and the SVD of the student's own weight.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lit_knowledge.errors import UserError

# init arm -> what it changes in the paper's recipe
ARMS = {
    "sensitivity": "the paper: most sensitive teacher layers, most sensitive sub-matrix, its truncated SVD",
    "standard": "peft's own LoRA init (A random, B zero): no teacher at all",
    "random_layers": "teacher layers drawn at random (kept in order), then the paper's alignment and SVD",
    "random_submatrix": "the paper's layers, a sub-matrix at a random position, its SVD",
    "spectrum": "random singular vectors with the paper's extracted singular values (the spectrum alone)",
    "student_svd": "the truncated SVD of the student's own weight (no teacher)",
}
TEACHER_ARMS = ("sensitivity", "random_layers", "random_submatrix", "spectrum")


def decoder_layers(model):
    """The decoder layers of a Llama-family model (a peft wrapper or not)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner.model.layers


def sensitivity(model, examples: list[dict]) -> dict[str, torch.Tensor]:
    """name -> Σ_examples |θ ⊙ ∇θ L(example)| for every parameter of the decoder layers.

    Each example is an encoded row whose labels score only the answer tokens; the sum runs over examples one at
    a time (the absolute value is taken per example, before summing).
    """
    layers = decoder_layers(model)
    params = {n: p for n, p in layers.named_parameters()}
    total = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    for row in examples:
        model.zero_grad(set_to_none=True)
        ids = torch.tensor([row["input_ids"]], device=device)
        labels = torch.tensor([row["labels"]], device=device)
        model(input_ids=ids, labels=labels).loss.backward()
        for n, p in params.items():
            if p.grad is not None:
                total[n] += (p.detach() * p.grad).abs().float()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return total


def select_layers(scores: dict[str, torch.Tensor], num_teacher: int, num_student: int) -> list[int]:
    """The `num_student` teacher layers of largest total sensitivity, in index order."""
    if num_student > num_teacher:
        raise UserError(f"the student has {num_student} layers, the teacher {num_teacher}: the teacher must be the "
                        "larger model (set method.teacher to a model with at least as many layers)")
    per_layer = torch.zeros(num_teacher, dtype=torch.float64)
    for name, s in scores.items():
        per_layer[int(name.split(".")[0])] += s.double().sum()
    return sorted(torch.topk(per_layer, num_student).indices.tolist())


def window_sums(scores: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The sum of `scores` over every contiguous (height, width) window: entry (r, c) covers rows r..r+height-1
    and columns c..c+width-1. One summed-area table, four shifted reads of it."""
    table = F.pad(scores.double().cumsum(0).cumsum(1), (1, 0, 1, 0))
    return table[height:, width:] - table[:-height, width:] - table[height:, :-width] + table[:-height, :-width]


def best_window(scores: torch.Tensor, height: int, width: int) -> tuple[int, int]:
    """(row, column) of the top-left corner of the (height, width) window with the largest total score."""
    rows, cols = scores.shape
    if height > rows or width > cols:
        raise UserError(f"a student matrix of shape ({height}, {width}) does not fit in the teacher's ({rows}, "
                        f"{cols}): the teacher must be at least as wide as the student in every dimension")
    sums = window_sums(scores, height, width)
    r, c = divmod(int(sums.argmax()), sums.shape[1])
    return r, c


def svd_factors(matrix: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(U_r, S_r, V_rᵀ) of the truncated SVD of `matrix` (float32)."""
    u, s, vh = torch.linalg.svd(matrix.float(), full_matrices=False)
    rank = min(rank, s.numel())
    return u[:, :rank], s[:rank], vh[:rank]


def random_orthonormal(rows: int, cols: int, generator: torch.Generator) -> torch.Tensor:
    """A (rows, cols) matrix with orthonormal columns, drawn uniformly (QR of a Gaussian matrix)."""
    q, r = torch.linalg.qr(torch.randn(rows, cols, generator=generator))
    return q * torch.sign(torch.diagonal(r)).unsqueeze(0)


def lora_init(arm: str, teacher_weight: torch.Tensor | None, teacher_scores: torch.Tensor | None,
              student_weight: torch.Tensor, rank: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, A) for one student matrix under `arm`, with B @ A the rank-r matrix the adapter starts from.

    `teacher_weight` / `teacher_scores` are the matched teacher layer's matrix and its sensitivity (None for the
    arms that use no teacher).
    """
    height, width = student_weight.shape
    if arm == "student_svd":
        u, s, vh = svd_factors(student_weight, rank)
        return u * s, vh
    if arm == "random_submatrix":
        r = int(torch.randint(teacher_weight.shape[0] - height + 1, (1,), generator=generator))
        c = int(torch.randint(teacher_weight.shape[1] - width + 1, (1,), generator=generator))
    else:
        r, c = best_window(teacher_scores, height, width)
    u, s, vh = svd_factors(teacher_weight[r:r + height, c:c + width], rank)
    if arm == "spectrum":  # the same singular values, singular vectors drawn at random
        u = random_orthonormal(height, s.numel(), generator)
        vh = random_orthonormal(width, s.numel(), generator).T
    return u * s, vh
