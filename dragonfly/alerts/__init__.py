"""Alerts: threshold rules on the metric stream and on agent health, their events, and the webhook sink."""
