"""Evaluation metrics: FID, Inception Score, CLIP-style similarity, a Fashion-MNIST
classifier (accuracy and feature network) and t-SNE plots. They take images and a
feature network; they know nothing of models or unlearning."""
from .classifier import (
    FASHION_CLASSIFIER, FashionClassifier, Features, accuracy, load_classifier, per_class_accuracy, predictions,
    save_classifier, train_classifier,
)
from .fid import frechet_distance, inception_features, inception_score
from .similarity import clip_similarity, mean_cosine, open_clip_embedder
from .tsne import tsne_plot

__all__ = [
    "frechet_distance",
    "inception_score",
    "inception_features",
    "clip_similarity",
    "mean_cosine",
    "open_clip_embedder",
    "FashionClassifier",
    "Features",
    "FASHION_CLASSIFIER",
    "train_classifier",
    "per_class_accuracy",
    "accuracy",
    "predictions",
    "save_classifier",
    "load_classifier",
    "tsne_plot",
]
