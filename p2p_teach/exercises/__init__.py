"""Build Prompt-to-Prompt yourself: notebook 07's exercises, their checkers, and your own edit.

Each exercise is a function you write in the explicit form (``softmax(QKᵀ/√d)`` maps):

* ``build_mapper(swaps)``: the word-swap mapper (77×77), checked by :func:`check_build_mapper`;
* ``replace_attention(source_maps, mapper)``: the target's maps from the source's through
  the mapper, :func:`check_replace_attention`;
* ``injection_table(num_steps, default, word_windows)``: τ, steps × target slots,
  :func:`check_injection_table`;
* ``refine_attention(source_maps, target_maps, source_index, alphas)``: refinement's mix,
  :func:`check_refine_attention`;
* ``local_blend_mask(word_maps, latent_size, threshold)``: LocalBlend's mask,
  :func:`check_local_blend_mask`.

A checker answers in levels: what is wrong first; a hint on ``hint=True`` or when the same
mistake is checked again; the expected value only with ``reveal=True``. :func:`check_edit` runs
your functions inside the real edit (:func:`learner_edit`) and compares the image with the
toolkit's. Reference solutions: :mod:`p2p_teach.exercises.solutions`.
"""

from __future__ import annotations

from .attention_checks import check_refine_attention, check_replace_attention
from .blend_checks import check_local_blend_mask
from .feedback import CheckReport, forget_attempts
from .learner import EditCheck, LearnerFunctionError, check_edit, image_difference, learner_edit
from .mapper_checks import check_build_mapper
from .schedule_checks import check_injection_table

__all__ = [
    "CheckReport",
    "EditCheck",
    "LearnerFunctionError",
    "check_build_mapper",
    "check_edit",
    "check_injection_table",
    "check_local_blend_mask",
    "check_refine_attention",
    "check_replace_attention",
    "forget_attempts",
    "image_difference",
    "learner_edit",
]
