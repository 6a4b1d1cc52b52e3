"""The model advisor: which U-Net variant to try first on a dataset.

``features`` computes dataset attributes from the prepared masks; ``ranker`` trains and evaluates
an XGBoost ranker over (dataset, model) pairs; ``ranking_metrics`` holds NDCG@k, MAP@k and
Spearman. Nothing is imported here, so that ``ubench.advisor.features`` does not pull in xgboost.
"""
