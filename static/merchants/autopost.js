/* After the owner approved a shop's key request: send the key back to the shop at once.
 * Without JavaScript the "Continue" button does the same. */
(function () {
  "use strict";
  var form = document.getElementById("authorize-return");
  if (form) { form.submit(); }
}());
