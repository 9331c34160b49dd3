"""Browser tests: headless Debian chromium, driven by Playwright, against real processes."""
