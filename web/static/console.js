// Continuum console: the care finder's map (Leaflet, Connecticut's counties from a vendored
// GeoJSON file, no tile server). Pages work without this script; it only draws the map.
(function () {
  'use strict';
  var holder = document.getElementById('map');
  var data = document.getElementById('map-data');
  if (!holder || !data || typeof L === 'undefined') { return; }
  var map;
  try { map = JSON.parse(data.textContent); } catch (e) { return; }
  holder.textContent = '';
  var m = L.map(holder, { zoomControl: true, attributionControl: true, scrollWheelZoom: false });
  m.attributionControl.setPrefix('Leaflet');
  m.attributionControl.addAttribution('Counties: US Census Bureau');
  var ct = L.latLngBounds([[40.95, -73.75], [42.06, -71.78]]);
  m.fitBounds(ct);
  fetch('/static/ct-counties.json').then(function (r) { return r.json(); }).then(function (geo) {
    L.geoJSON(geo, {
      style: { color: '#5b6b7a', weight: 1, fillColor: '#ffffff', fillOpacity: 1 },
      onEachFeature: function (f, layer) { layer.bindTooltip(f.properties.name + ' County', { sticky: true }); }
    }).addTo(m).bringToBack();
  }).catch(function () { /* the points still show */ });
  // a popup's words as text, never as markup (a site's name is written by people)
  function text(words) { var el = document.createElement('span'); el.textContent = words; return el; }
  var points = [];
  if (map.home) {
    var home = [map.home.lat, map.home.lng];
    points.push(home);
    L.circle(home, { radius: (map.radius_miles || 30) * 1609.34, color: '#0b4f8a', weight: 1, fillOpacity: 0.06 }).addTo(m);
    L.circleMarker(home, { radius: 8, color: '#1b1f24', fillColor: '#1b1f24', fillOpacity: 1 })
      .bindTooltip('Home', { permanent: true, direction: 'right' }).addTo(m);
  }
  (map.sites || []).forEach(function (s) {
    var colour = s.organization === 'cc' ? '#0e6a70' : (s.organization === 'hhc' ? '#3b3f9c' : '#5a4a1e');
    var at = [s.lat, s.lng];
    points.push(at);
    L.circleMarker(at, { radius: 9, color: '#ffffff', weight: 2, fillColor: colour, fillOpacity: 1 })
      .bindTooltip(String(s.rank), { permanent: true, direction: 'center', className: 'rank-label' })
      .bindPopup(text(s.rank + '. ' + s.name + (s.distance ? ' · ' + s.distance : '')))
      .addTo(m);
  });
  if (points.length > 1) { m.fitBounds(L.latLngBounds(points).pad(0.3)); }
}());
