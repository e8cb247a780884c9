"""Distribution strategy, compilation, hyperparameter tuning, final training and the experiment runner."""
