"""EuroSAT (10 land-use classes): ``DATA/eurosat/{2750/<Class>/*.jpg, split_zhou_EuroSAT.json}``.

Without the split JSON, each class folder is split 50/20/30. Folder names are replaced by CoOp's
descriptive class names (``NEW_CNAMES``), which the prompts use.
"""

from datasets._common import SplitJsonDataset
from engine.data.splits import read_and_split_data
from engine.registry import DATASET_REGISTRY

__all__ = ["EuroSAT", "NEW_CNAMES"]

NEW_CNAMES = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}


@DATASET_REGISTRY.register()
class EuroSAT(SplitJsonDataset):
    """EuroSAT (RGB) in CoOp's layout."""

    folder = "eurosat"
    image_folder = "2750"
    split_file = "split_zhou_EuroSAT.json"
    contents = "2750/<Class>/*.jpg from the EuroSAT RGB archive"

    def make_split(self):
        return read_and_split_data(self.image_dir, new_cnames=NEW_CNAMES)
