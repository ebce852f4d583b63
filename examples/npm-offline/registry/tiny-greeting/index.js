'use strict';
// Served by examples/npm-offline/registry.py; greet-app depends on it.
module.exports = function greet(who) {
  return `hello ${who}, from tiny-greeting`;
};
