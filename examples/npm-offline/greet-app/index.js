'use strict';
const greet = require('tiny-greeting');
console.log(greet(process.argv[2] || 'npm-offline'));
