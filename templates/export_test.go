package templates

// DisplayWidth exposes the wrapper's notion of width to the tests.
var DisplayWidth = displayWidth
