"""The HTTP layer: the application, its handlers and responses. Nothing below it imports it."""
