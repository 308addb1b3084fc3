"""The PostHog capture API's paths and methods: served by :mod:`.posthog`, labelled in
:mod:`.responses`, described in :mod:`.openapi`."""

SOURCE = "posthog"
V0_PATHS = ("/capture", "/batch", "/e", "/i/v0/e", "/track", "/engage")
V1_PATH = "/i/v1/analytics/events"
V0_METHODS = ("GET", "POST", "OPTIONS")
V1_METHODS = ("POST", "OPTIONS")
