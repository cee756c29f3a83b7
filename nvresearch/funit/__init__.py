"""FUNIT: Few-Shot Unsupervised Image-to-Image Translation (Liu et al., ICCV 2019).

Torch-only public pieces: the few-shot generator and the multi-task discriminator, the losses, the list-file and
embedded datasets, and the evaluation helpers. Lightning lives in ``nvresearch.funit.module`` and
``nvresearch.funit.datamodule``, which this package does not import.
"""

from nvresearch.funit.data import (
    ListFileDataset,
    SyntheticCreatures,
    TranslationPairs,
    creature_layouts,
    creature_palettes,
    creature_species,
    extract_animal_faces,
    read_list_file,
    render_creatures,
    write_list_file,
)
from nvresearch.funit.losses import discriminator_losses, generator_losses, gradient_penalty
from nvresearch.funit.metrics import (
    SmallClassifier,
    cluster_mean_se,
    colour_transfer,
    estimate_pose,
    foreground_weights,
    kshot_sets,
    mean_code_translation,
    nested_kshot_sets,
    pose_error,
    train_classifier,
    translate_to_classes,
)
from nvresearch.funit.models import ClassEncoder, ContentEncoder, Decoder, FewShotGenerator, MultiTaskDiscriminator
from nvresearch.funit.official import load_official

__all__ = [
    "ClassEncoder",
    "ContentEncoder",
    "Decoder",
    "FewShotGenerator",
    "ListFileDataset",
    "MultiTaskDiscriminator",
    "SmallClassifier",
    "SyntheticCreatures",
    "TranslationPairs",
    "cluster_mean_se",
    "colour_transfer",
    "creature_layouts",
    "creature_palettes",
    "creature_species",
    "discriminator_losses",
    "estimate_pose",
    "extract_animal_faces",
    "foreground_weights",
    "generator_losses",
    "gradient_penalty",
    "kshot_sets",
    "load_official",
    "mean_code_translation",
    "nested_kshot_sets",
    "pose_error",
    "read_list_file",
    "render_creatures",
    "train_classifier",
    "translate_to_classes",
    "write_list_file",
]
