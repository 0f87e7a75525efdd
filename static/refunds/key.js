// A saved refund link carries the claim's key after "#key=" (a fragment is never sent to the
// server, so it never reaches a log): put it in the form and open the claim.
(function () {
  var match = /^#key=([A-Za-z0-9_-]{20,100})$/.exec(window.location.hash);
  var form = document.getElementById('key-form');
  if (!match || !form) return;
  form.elements.key.value = match[1];
  history.replaceState(null, '', window.location.pathname); // keep the key out of history
  form.submit();
})();
