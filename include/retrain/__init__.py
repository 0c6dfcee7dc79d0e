"""retrain: drift-gated retraining with a champion/challenger promotion gate."""
