"""The models the pipeline evaluates, in the order tables and figures show them.

One list for the evaluate stage, `ncf compare`, `ncf report` and the figures: the three neural
models (trained by the pretrain_gmf, pretrain_mlp and train_neumf stages), then popularity, then
the simple baselines of the baselines stage.
"""

NEURAL = ("neumf", "gmf", "mlp")
BASELINES = ("ease", "ials", "itemknn")
MODELS = (*NEURAL, "popularity", *BASELINES)

LABELS = {"neumf": "NeuMF", "gmf": "GMF", "mlp": "MLP", "popularity": "Popularity",
          "ease": "EASE", "ials": "iALS", "itemknn": "ItemKNN"}
COLORS = {"neumf": "#4C72B0", "gmf": "#DD8452", "mlp": "#55A868", "popularity": "#8C8C8C",
          "ease": "#C44E52", "ials": "#8172B3", "itemknn": "#937860"}
