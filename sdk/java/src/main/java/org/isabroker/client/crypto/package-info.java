/**
 * What the broker seals to an agency (agency-topic records, encrypted webhook bodies): a JWS
 * signed by the broker's delivery-signing key inside a JWE encrypted to the agency's key.
 * {@link org.isabroker.client.crypto.DeliveryOpener} opens and checks them,
 * {@link org.isabroker.client.crypto.BrokerKeys} holds the broker's keys,
 * {@link org.isabroker.client.crypto.RecipientKeys} makes and loads the agency's.
 */
package org.isabroker.client.crypto;
