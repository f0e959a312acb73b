"""Datasets: Fashion-MNIST and class splits."""
from .fashion_mnist import CLASSES as FASHION_MNIST_CLASSES
from .fashion_mnist import fashion_mnist
from .splits import ClassSplit, first_per_class, split_by_class

__all__ = ["fashion_mnist", "FASHION_MNIST_CLASSES", "split_by_class", "first_per_class", "ClassSplit"]
from .source import EpochSampler, ImageSource

__all__ += ["ImageSource", "EpochSampler"]
from .folders import ClassFolders, ImageFiles, class_split_folders, read_class_list, read_file_list

__all__ += ["ClassFolders", "ImageFiles", "class_split_folders", "read_class_list", "read_file_list"]
from .decode import decode_image
from .folders import FileImages

__all__ += ["decode_image", "FileImages"]
from .config import DataConfig

__all__ += ["DataConfig"]
from .assets import load_demo_images

__all__ += ["load_demo_images"]
