/* Passkeys (WebAuthn): add one on the security page, sign in with one on the
   sign-in page, or use one as the second sign-in step.

   A button with data-passkey="register", "login" or "2fa" starts a ceremony:
   it posts for options (data-options-url), hands them to navigator.credentials,
   posts the answer as JSON (data-url) and follows the redirect it gets back.
   The server keeps the challenge; nothing here is trusted by it. Buttons stay
   hidden where the browser has no WebAuthn. */
(function () {
  "use strict";

  if (!window.PublicKeyCredential || !navigator.credentials) {
    return;
  }
  // WebAuthn takes a domain name as the relying party, never an IP address
  // (http://127.0.0.1:8000 fails with "invalid domain"): say so instead.
  var host = window.location.hostname;
  if (/^[0-9.]+$/.test(host) || host.indexOf(":") !== -1 || host.charAt(0) === "[") {
    document.querySelectorAll("[data-passkey-needs-name]").forEach(function (note) {
      note.hidden = false;
    });
    return;
  }

  function toBuffer(text) {
    var base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    base64 += "===".slice((base64.length + 3) % 4);
    var raw = atob(base64);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) {
      bytes[i] = raw.charCodeAt(i);
    }
    return bytes.buffer;
  }

  function toText(buffer) {
    var bytes = new Uint8Array(buffer);
    var raw = "";
    for (var i = 0; i < bytes.length; i++) {
      raw += String.fromCharCode(bytes[i]);
    }
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function csrfToken() {
    var field = document.querySelector("input[name=csrfmiddlewaretoken]");
    return field ? field.value : "";
  }

  function post(url, body, isJson) {
    var headers = { "X-CSRFToken": csrfToken(), Accept: "application/json" };
    if (isJson) {
      headers["Content-Type"] = "application/json";
    }
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: headers,
      body: body,
    }).then(function (response) {
      return response
        .json()
        .catch(function () {
          return {};
        })
        .then(function (data) {
          if (!response.ok) {
            throw new Error(data.detail || "The request failed. Please try again.");
          }
          return data;
        });
    });
  }

  function descriptors(list) {
    return (list || []).map(function (item) {
      return Object.assign({}, item, { id: toBuffer(item.id) });
    });
  }

  function answerJSON(credential) {
    var response = credential.response;
    var answer = {
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || undefined,
      clientExtensionResults: credential.getClientExtensionResults(),
      response: { clientDataJSON: toText(response.clientDataJSON) },
    };
    if (response.attestationObject) {
      answer.response.attestationObject = toText(response.attestationObject);
      if (response.getTransports) {
        answer.response.transports = response.getTransports();
      }
    } else {
      answer.response.authenticatorData = toText(response.authenticatorData);
      answer.response.signature = toText(response.signature);
      answer.response.userHandle = response.userHandle
        ? toText(response.userHandle)
        : null;
    }
    return answer;
  }

  function register(button) {
    var nameField = document.getElementById("passkey-name");
    return post(button.dataset.optionsUrl, "", false)
      .then(function (options) {
        options.challenge = toBuffer(options.challenge);
        options.user.id = toBuffer(options.user.id);
        options.excludeCredentials = descriptors(options.excludeCredentials);
        return navigator.credentials.create({ publicKey: options });
      })
      .then(function (credential) {
        return post(
          button.dataset.url,
          JSON.stringify({
            credential: answerJSON(credential),
            name: nameField ? nameField.value : "",
          }),
          true
        );
      });
  }

  function signIn(button, step) {
    var form = new URLSearchParams();
    form.set("step", step);
    return post(button.dataset.optionsUrl, form, false)
      .then(function (options) {
        options.challenge = toBuffer(options.challenge);
        options.allowCredentials = descriptors(options.allowCredentials);
        return navigator.credentials.get({ publicKey: options });
      })
      .then(function (credential) {
        return post(
          button.dataset.url,
          JSON.stringify({
            credential: answerJSON(credential),
            step: step,
            next: button.dataset.next || "",
          }),
          true
        );
      });
  }

  document.querySelectorAll("[data-passkey]").forEach(function (button) {
    var panel = button.closest("[data-passkey-panel]") || button;
    var status = panel.querySelector("[data-passkey-status]");
    panel.hidden = false;
    button.hidden = false;
    button.addEventListener("click", function () {
      var kind = button.dataset.passkey;
      button.disabled = true;
      if (status) {
        status.textContent = "Waiting for your passkey…";
      }
      var ceremony = kind === "register" ? register(button) : signIn(button, kind);
      ceremony
        .then(function (data) {
          window.location.assign(data.redirect);
        })
        .catch(function (error) {
          button.disabled = false;
          if (status) {
            status.textContent =
              error && error.name === "NotAllowedError"
                ? "The passkey request was cancelled or timed out."
                : error.message;
          }
        });
    });
  });
})();
