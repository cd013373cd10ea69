// Package dashboardtest holds the dashboard's browser tests: real headless
// Chromium, driven through the DevTools protocol (chromedp), against the
// real daemon started in-process on :0 ports with real backends and load.
//
// Run them with
//
//	go test -race ./internal/dashboardtest/
//
// and regenerate the screenshots in docs/img/ with
//
//	go test ./internal/dashboardtest/ -run TestDashboard -update-screenshots
//
// Chromium is Debian's /usr/bin/chromium (override with MODELGATE_CHROMIUM).
package dashboardtest
