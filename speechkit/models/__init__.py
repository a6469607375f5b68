"""speechkit.models: SSL speech encoders, their pre-training objectives, presets and checkpoint loading."""
from .conv_extractor import ConvFeatureExtractor, conv_output_lengths
from .encoder import EncoderConfig, EncoderOutput, SSLEncoder, find_encoder
from .hubert import HubertConfig, HubertPretrainModel, align_labels
from .masking import compute_mask_indices
from .presets import ENCODER_PRESETS, HUBERT_PRESETS, encoder_preset, hubert_preset
from .registry import (PretrainedLoadError, build_model, build_upstream, known_archs, load_pretrained,
                       load_pretrained_with_state, register_encoder, register_model, resolve_config)

__all__ = [
    "ConvFeatureExtractor", "conv_output_lengths", "EncoderConfig", "EncoderOutput", "SSLEncoder", "find_encoder",
    "HubertConfig", "HubertPretrainModel", "align_labels", "compute_mask_indices", "ENCODER_PRESETS",
    "HUBERT_PRESETS", "encoder_preset", "hubert_preset", "PretrainedLoadError", "build_model", "known_archs",
    "load_pretrained", "register_model", "resolve_config", "build_upstream", "load_pretrained_with_state",
    "register_encoder",
]
