"""Sensitivity of every activation to simultaneous image augmentations.

The pipeline of Kharyuk, Matveev and Oseledets, "Exploring specialization and sensitivity of
convolutional neural networks in the context of simultaneous image augmentations" (see
``docs/references.md``), built on the generic engine of :mod:`convscope.sensitivity`
(designs, estimators, Sobol' indices, Shapley effects):

* :mod:`~convscope.sensitivity.augmentation.augmentations` — the augmentation sets A1 and A2,
  composition in any order, user-defined augmentations;
* :mod:`~convscope.sensitivity.augmentation.augmentation_sensitivity` — Sobol' indices or
  Shapley effects of every activation of chosen layers, streamed, resumable, sharded;
* :mod:`~convscope.sensitivity.augmentation.analysis` — correlations, LDA, clustering;
* :mod:`~convscope.sensitivity.augmentation.masking` — guided masking of activations;
* :mod:`~convscope.sensitivity.augmentation.single_class` — sensitive classes and Jaccard;
* :mod:`~convscope.sensitivity.augmentation.single_augmentation` — one augmentation at a time;
* :mod:`~convscope.sensitivity.augmentation.segments` — single HSV channel inputs;
* :mod:`~convscope.sensitivity.augmentation.experiments` — the paper's experiments in one call.

Everything public here is also importable from :mod:`convscope.sensitivity`.
"""
