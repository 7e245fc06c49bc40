"""A simplex in weight space: the networks at barycentric combinations of K vertex networks.

phi(a) = sum_k a_k theta_k with a_k >= 0 and sum_k a_k = 1 (Benton et al. 2021; Wortsman et al.
2021 for subspaces trained from scratch). It is the same span of control points as a curve, with
the caller's weights in place of a curve's coefficients, so any `nn.Module` works unchanged.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ModeconnError
from .span import WeightSpan, stack_networks

WEIGHTS_TOLERANCE = 1e-6  # barycentric weights must sum to one within this

# Simplex._fixed_block's cache: the fixed points' (data_ptr, version, device) and, per face, its
# ((origin, fixed edges), Gram block)
_FixedBlockCache = tuple[tuple[int, int, torch.device],
                         dict[tuple[int, ...], tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]]]


class Simplex(WeightSpan):
    """K vertices (networks of one architecture); `free[k]` says whether vertex k is trained.

    `faces` (lists of vertex indices) make a simplicial complex instead: points are drawn from a
    face chosen uniformly, and the volume is the faces' total (Benton et al.'s mode-connecting
    volumes: each mode with the vertices they share). Default: one face of every vertex.
    """

    def __init__(self, vertices: list[nn.Module], free: list[bool] | None = None, faces: list[list[int]] | None = None):
        if len(vertices) < 2:
            raise ModeconnError(f"a simplex needs at least 2 vertices, got {len(vertices)}")
        free = [False] * len(vertices) if free is None else list(free)
        if len(free) != len(vertices):
            raise ModeconnError(f"free has {len(free)} entries for {len(vertices)} vertices; give one per vertex")
        points, buffers = stack_networks(vertices, "vertex")
        super().__init__(vertices[0], points, [not f for f in free], buffers)
        self.faces = check_faces(faces, len(vertices))
        mask = torch.zeros(len(self.faces), len(vertices), dtype=torch.bool, device=points.device)
        for i, face in enumerate(self.faces):
            mask[i, face] = True
        self.register_buffer("face_mask", mask)  # kept in simplex.safetensors: a complex loads back as one

    @property
    def is_complex(self) -> bool:
        """Whether the points lie on several faces rather than one simplex of every vertex."""
        return len(self.faces) > 1 or len(self.faces[0]) < self.num_points

    def check_weights(self, weights) -> list[float]:
        """The weights as floats, refused unless there is one per vertex, none negative, summing to one."""
        a = [float(x) for x in weights]
        if len(a) != self.num_points:
            raise ModeconnError(f"{len(a)} barycentric weights for a simplex of {self.num_points} vertices")
        if min(a) < 0 or abs(sum(a) - 1) > WEIGHTS_TOLERANCE or not all(map(math.isfinite, a)):
            raise ModeconnError(f"barycentric weights must be >= 0 and sum to 1, got {a}")
        return a

    def point(self, weights, wd: float = 0.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """phi(weights) as a flat vector and a state dict of views (see `WeightSpan.point_at`)."""
        return self.point_at(self.check_weights(weights), wd)

    def forward(self, x: torch.Tensor, weights, wd: float = 0.0) -> torch.Tensor:
        """Run the network at phi(weights) on x."""
        return self.run(self.point(weights, wd)[1], x)

    def model_at(self, weights) -> nn.Module:
        """An ordinary `nn.Module` holding the weights and buffers at phi(weights)."""
        return self.module_at(self.check_weights(weights))

    def sample_weights(self, generator: torch.Generator) -> list[float]:
        """Barycentric weights drawn uniformly over the simplex (Dirichlet(1)), from a CPU generator;
        in a complex, over a face drawn uniformly first."""
        face = self.faces[0] if len(self.faces) == 1 else self.faces[
            int(torch.randint(len(self.faces), (), generator=generator, device="cpu"))]
        e = -torch.rand(len(face), generator=generator, dtype=torch.float64, device="cpu").log()
        weights = [0.0] * self.num_points
        for k, w in zip(face, (e / e.sum()).tolist()):
            weights[k] = w
        return weights

    def edge_gram(self, face: list[int] | None = None) -> torch.Tensor:
        """Gram matrix of the edges from the first vertex of `face` (default: all vertices) to its
        others, in float64 (differentiable), up to a simultaneous permutation of rows and columns (the
        fixed vertices' edges first): its determinant is the same. Float64 because a new vertex
        starts in the others' span, where the determinant is a difference of nearly equal products."""
        face = list(range(self.num_points)) if face is None else face
        if not self._fixed_list[face[0]] or not self._free_rows or not set(self._free_rows) <= set(face):
            return _gram(self.control_points().double()[face])
        fixed_edges, fixed_gram = self._fixed_block(face)
        cross, free_gram = _FreeEdgeGram.apply(self.free_points, fixed_edges[0], fixed_edges[1])
        return torch.cat([torch.cat([fixed_gram, cross], 1), torch.cat([cross.T, free_gram], 1)])

    def _fixed_block(self, face: list[int]) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        """A face's origin and fixed edges, and their Gram block: constant while the free vertices
        train, so kept until the fixed points change (a step then forms only the free vertices' rows)."""
        key = (self.fixed_points.data_ptr(), self.fixed_points._version, self.fixed_points.device)
        kept: _FixedBlockCache | None = self.__dict__.get("_fixed_block_cache")
        if kept is None or kept[0] != key:  # new or changed fixed points: every face's block is stale
            kept = (key, {})
            object.__setattr__(self, "_fixed_block_cache", kept)
        cache = kept[1]
        if tuple(face) not in cache:
            rows = [self._fixed_rows.index(k) for k in face if self._fixed_list[k]]
            with torch.no_grad():
                origin = self.fixed_points[rows[0]]
                edges = (self.fixed_points[rows[1:]] - origin).double()
                cache[tuple(face)] = ((origin, edges), edges @ edges.T)
        return cache[tuple(face)]

    def volume(self) -> torch.Tensor:
        """The simplex's (K-1)-dimensional volume, sqrt(det G) / (K-1)!, in float64 (differentiable);
        a complex's is the sum of its faces' volumes.

        Where the vertices are affinely dependent (a new vertex at the others' centroid) the volume
        is 0 and its gradient 0, not NaN: |height| has no direction there.
        """
        # Not a Tensor in one case: where every face is a single vertex (faces [[0], [1]]), the sum of
        # nothing is the int 0, on which callers' .detach() fails. Left as it is (annotation work only).
        return sum(_volume(self.edge_gram(face)) for face in self.faces if len(face) > 1)  # type: ignore[return-value]

    def centroid(self) -> list[float]:
        """The barycentric weights of the simplex's centre (a complex has one per face: `face_centres`)."""
        if self.is_complex:
            raise ModeconnError("a complex has no single centre: use face_centres()")
        return self.face_centres()[0]

    def face_centres(self) -> list[list[float]]:
        """The barycentric weights of each face's centre (a simplex: its one centroid)."""
        return [[1.0 / len(face) if k in face else 0.0 for k in range(self.num_points)] for face in self.faces]

    def grown(self) -> Simplex:
        """One more vertex, free, at the centroid of all the present ones (which are fixed), added to
        every face (SPRO; in a complex, a new vertex that the modes share)."""
        with torch.no_grad():
            vertices = [self.control_model(k) for k in range(self.num_points)]
            vertices.append(self.module_at([1.0 / self.num_points] * self.num_points))
        k = self.num_points
        return Simplex(vertices, [False] * k + [True], [face + [k] for face in self.faces])


def check_faces(faces, num_vertices: int) -> list[list[int]]:
    """Faces as sorted lists of vertex indices, refused unless each is in range, without repeats,
    and every vertex lies on one; None is the one face of every vertex."""
    if faces is None:
        return [list(range(num_vertices))]
    faces = [sorted(int(k) for k in face) for face in faces]
    if not faces or any(not face or len(set(face)) != len(face) or face[0] < 0 or face[-1] >= num_vertices
                        for face in faces):
        raise ModeconnError(f"faces {faces} must each list distinct vertices among 0..{num_vertices - 1}")
    if set().union(*faces) != set(range(num_vertices)):
        raise ModeconnError(f"faces {faces} leave a vertex out: every vertex must lie on a face")
    return faces


class _FreeEdgeGram(torch.autograd.Function):
    """The free vertices' rows of the edge Gram matrix, E_fixed e^T and e e^T with e = free - origin
    in float64, and their gradient in two passes over e (autograd's own makes about five, and the
    volume term then cost a SPRO step more than the network did)."""

    @staticmethod
    def forward(ctx, free, origin, fixed_edges):
        edges = (free - origin).double()
        ctx.save_for_backward(edges, fixed_edges)
        ctx.dtype = free.dtype
        return fixed_edges @ edges.T, edges @ edges.T

    @staticmethod
    def backward(ctx, grad_cross, grad_free):
        edges, fixed_edges = ctx.saved_tensors
        grad = (grad_free + grad_free.T) @ edges
        grad.addmm_(grad_cross.T, fixed_edges)
        return grad.to(ctx.dtype), None, None


def _gram(v: torch.Tensor) -> torch.Tensor:
    edges = v[1:] - v[0]
    return edges @ edges.T


def _volume(gram: torch.Tensor) -> torch.Tensor:
    """sqrt(det G) / (K-1)! for the edge Gram matrix of K vertices, 0 with gradient 0 at degeneracy."""
    det = torch.linalg.det(gram).clamp(min=1e-300)
    return det.sqrt() / math.factorial(len(gram))
