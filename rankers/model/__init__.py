"""The pure, scriptable model: what is exported and served.

    tokenizer.py   THE tokenizer: raw feature values -> token bags (Vocabulary, Tokenizer)
    layers.py      token bags, MLPs, and their torch.export-friendly form
    towers.py      UserTower, ItemTower
    score.py       THE score module (Scorer): <user, item> + bias + every extra term, answered
                   for all items or for given items
    two_tower.py   TwoTower = towers + Scorer; UserInputs, what the user side reads

Training (``rankers.training``) fits these modules; ``rankers.artifact`` exports them.
"""
from rankers.model.score import Scorer
from rankers.model.tokenizer import OOV, PAD, FeatureSpec, Tokenizer, Vocabulary
from rankers.model.two_tower import TwoTower, UserInputs, history_mask

__all__ = ["TwoTower", "UserInputs", "history_mask", "Scorer", "Tokenizer", "Vocabulary", "FeatureSpec", "OOV",
           "PAD"]
