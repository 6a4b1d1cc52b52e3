"""The model advisor: which U-Net variant to try first on a dataset.

Dataset attributes (the advisor's inputs) are computed in the data layer,
``ubench.data.attributes``; ``ranker`` trains and evaluates an XGBoost ranker over (dataset,
model) pairs; ``ranking_metrics`` holds NDCG@k, MAP@k and Spearman; ``table`` and ``service``
build its inputs and answer ``ubench advise``. Nothing is imported here, so importing one part
never pulls in xgboost.
"""
