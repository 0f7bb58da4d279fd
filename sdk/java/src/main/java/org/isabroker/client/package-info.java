/**
 * The broker's HTTP API for an agency: {@link org.isabroker.client.IsaBrokerClient} (tokens,
 * publishing, subscriptions, deliveries, dead letters, duties, the inbox), the answer types, and
 * the exceptions ({@link org.isabroker.client.ProblemException} and its kinds).
 */
package org.isabroker.client;
